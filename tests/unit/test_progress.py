import io

from segsim.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_quiet_when_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(100, stream=stream)
    bar.update(50, acceptance=0.5, force=True)
    bar.close()
    assert stream.getvalue() == ""


def test_shows_rate_acceptance_and_eta_on_a_terminal():
    stream = _Tty()
    bar = Progress(2_000_000, stream=stream)
    bar.update(1_000_000, acceptance=0.25, force=True)
    bar.close()
    text = stream.getvalue()
    assert "1.00M/2.00M" in text
    assert "steps/s" in text
    assert "acc 0.250" in text
    assert "ETA" in text
    assert text.endswith("\n")


def test_forced_off_on_a_terminal():
    stream = _Tty()
    Progress(10, stream=stream, enabled=False).update(5, force=True)
    assert stream.getvalue() == ""
