"""The run report's "why it decided that" section (the browser check: tests/report/test_browser.py)."""


def test_the_report_shows_the_why_section(tmp_path):
    from asr_transfer.report.render import write_report
    from tests.report.rundirs import interpret_run

    html = write_report(interpret_run(tmp_path / "run")).read_text()
    assert "Why it decided that" in html
    assert "Deletion test (acc after deleting each share of frames)" in html
    assert html.count('alt="worst: a.wav, true high, predicted low"') == 1
    assert html.count("data:image/png;base64,") >= 2 + 1 + 1 + 1  # 2 clips, deletion, drift, the run's own
