"""A physics-free rate sum tree for rejection-free (n-fold way) event selection.

The tree is one ``float64`` array of length ``2 * P`` where ``P`` is the smallest power of two
that holds every leaf.  Leaf ``k`` lives at ``tree[P + k]``; every internal node ``i`` holds
``tree[2 i] + tree[2 i + 1]``, so ``tree[1]`` is the total rate.  Node ``0`` is unused.

* build: O(n); update of one leaf: O(log n) (the path to the root is recomputed from the
  children, so no rounding error accumulates however many updates are made, and a tree
  rebuilt from the same leaves is bitwise identical to an incrementally updated one);
* sample: O(log n) descent.

The selector knows nothing about events: a leaf is whatever the caller sums into it (segsim
uses one leaf per lattice site, holding the sum of that site's event rates).
"""

from segsim.kernels._jit import njit, njit_inline


@njit
def _tree_leaf_offset(tree):
    """Return ``P``, the index of leaf 0."""
    return tree.shape[0] // 2


@njit
def _tree_build(tree, leaves):
    """Fill ``tree`` from the leaf values ``leaves`` (length <= P); unused leaves are 0."""
    p = tree.shape[0] // 2
    n = leaves.shape[0]
    for k in range(p):
        tree[p + k] = leaves[k] if k < n else 0.0
    for i in range(p - 1, 0, -1):
        tree[i] = tree[2 * i] + tree[2 * i + 1]
    tree[0] = 0.0


@njit_inline
def _tree_update(tree, leaf, value):
    """Set leaf ``leaf`` to ``value`` and recompute the sums on its path to the root."""
    i = tree.shape[0] // 2 + leaf
    tree[i] = value
    i //= 2
    while i >= 1:
        tree[i] = tree[2 * i] + tree[2 * i + 1]
        i //= 2


@njit_inline
def _tree_sample(tree, target):
    """Return ``(leaf, remainder)`` for ``0 <= target < tree[1]``.

    The leaf is the one whose cumulative interval contains ``target``; ``remainder`` is
    ``target`` minus the sum of all leaves before it, so ``0 <= remainder < tree[leaf]`` up to
    round-off.  A branch with zero total is never entered.
    """
    p = tree.shape[0] // 2
    i = 1
    while i < p:
        left = tree[2 * i]
        if (target < left and left > 0.0) or tree[2 * i + 1] <= 0.0:
            i = 2 * i
        else:
            target -= left
            i = 2 * i + 1
    return i - p, target


@njit_inline
def _tree_fix_paths(tree, leaves, m):
    """Recompute the sums above the leaves ``leaves[:m]`` whose values were set directly.

    The batched form of :func:`_tree_update` for several leaves changed by one event: the
    leaves are sorted (insertion sort; ``m`` is small) so that the parents of each level come
    out sorted too and each shared ancestor is recomputed once.  Every node is recomputed
    from its children as in :func:`_tree_update`, so the tree stays bitwise equal to a
    rebuild.  ``leaves`` is overwritten with node indices.
    """
    if m == 0:
        return
    p = tree.shape[0] // 2
    for a in range(1, m):
        x = leaves[a]
        b = a - 1
        while b >= 0 and leaves[b] > x:
            leaves[b + 1] = leaves[b]
            b -= 1
        leaves[b + 1] = x
    n = 0  # unique parents of the leaves
    for a in range(m):
        node = (p + leaves[a]) // 2
        if n == 0 or leaves[n - 1] != node:
            leaves[n] = node
            n += 1
    while True:
        for a in range(n):
            i = leaves[a]
            tree[i] = tree[2 * i] + tree[2 * i + 1]
        if leaves[0] == 1:
            break
        k = 0
        for a in range(n):
            node = leaves[a] // 2
            if k == 0 or leaves[k - 1] != node:
                leaves[k] = node
                k += 1
        n = k
