"""`maskdepth demo`: every stage runs and the report shows them."""

from maskdepth.cli import main
from maskdepth.runtime.image import read_image


def test_demo_writes_its_report_and_picture(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--count", "20"]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert report.count("| ok |") == 3 and "failed" not in report
    assert "![bg | scene | mask | depth](samples.png)" in report
    assert read_image(out / "samples.png").shape[1] > 600
