"""check_prediction (chapters 08-10): it reports the measured range and where the prediction fell,
and never stops a chapter on a wrong guess."""

from __future__ import annotations

import json

import pytest

from mlstep.exercises import REPORT_ENV, check_prediction


def test_check_prediction_reports_the_measured_range(tmp_path, monkeypatch, capsys):
    report = tmp_path / "grade.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(report))
    gains = [33.0, 35.3, 37.5]
    assert check_prediction("gain", 35, gains, unit=" points") is None  # never stops a chapter
    assert "gain: measured 33 points to 37.5 points (3 measurements); your prediction, 35 points, was inside" \
        in capsys.readouterr().out
    check_prediction("gain", 5, gains)
    assert "your prediction, 5, was outside that range" in capsys.readouterr().out
    check_prediction("gain", 37.5, gains)  # the ends belong to the range
    assert "was inside" in capsys.readouterr().out
    check_prediction("gain", "unseen", gains)
    assert "❌ check_prediction: gain: measured" in capsys.readouterr().out
    check_prediction("share", 0.4, [0.5])
    assert "measured 0.5 (1 measurement)" in capsys.readouterr().out
    assert [json.loads(x)["passed"] for x in report.read_text().splitlines()] == [True, True, True, False, True]
    with pytest.raises(ValueError, match="at least one number"):
        check_prediction("gain", 1, [])
