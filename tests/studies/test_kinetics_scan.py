"""The kinetics scan study: settings, labels and resuming (the runs themselves are KMC)."""

import json

from studies.kinetics_scan import kinetics_scan as ks


def test_settings_parse_and_label_stably():
    assert ks.parse_setting("base") == {}
    s = ks.parse_setting("e_rec_ev=1.0, e_kra_pb_ev=0.95")
    assert s == {"e_rec_ev": 1.0, "e_kra_pb_ev": 0.95}
    assert ks.label_of(s) == "e_kra_pb_ev=0.95,e_rec_ev=1"
    assert ks.label_of({}) == "base"


def test_scan_resumes_without_rerunning_finished_settings(tmp_path, monkeypatch):
    calls = []

    def fake(setting, model, days, treatments, n_ncs):
        calls.append(ks.label_of(setting))
        return [
            {
                "setting": ks.label_of(setting),
                "kinetics": setting,
                "effective": ks.effective(setting),
                "model": model,
                "treatment": "pristine",
                "day": days,
                "x_cd": 0.1,
                "pl0_nm": 480.0,
                "pl_nm": 495.0,
                "edge_nm": 11.0,
                "events": 1e6,
                "event_counts": {"hop_pb": 10, "hop_cd": 0},
                "wall_s": 1.0,
                "n_ncs": n_ncs,
            }
        ]

    monkeypatch.setattr(ks, "run_setting", fake)
    args = ["--jsonl", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "s.md"), "--days", "1"]
    assert ks.main([*args, "--set", "base", "--set", "e_rec_ev=1.0"]) == 0
    assert ks.main([*args, "--set", "base", "--set", "e_rec_ev=1.0", "--set", "e_rec_ev=0.9"]) == 0
    assert calls == ["base", "e_rec_ev=1", "e_rec_ev=0.9"]
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["setting"] for r in rows] == calls
    md = (tmp_path / "s.md").read_text()
    e = ks.effective({})
    assert (
        f"| {e['e_kra_pb_ev']:.2f} | {e['e_kra_cd_ev']:.2f} | {e['e_exp_cd_ev']:.2f} | 0.90 | "
        "pristine | 1 | 1 | 0.100 | 480.0 | 495.0 | 11.00 | 1.00e+06 | hop_pb 10 | 1 |"
    ) in md
    # a setting equal to the defaults is the same run as "base"
    assert ks.main([*args, "--set", f"e_rec_ev={e['e_rec_ev']}"]) == 0
    assert len(calls) == 3
