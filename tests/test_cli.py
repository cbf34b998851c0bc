"""The `maskdepth` command: subcommands, one-line errors with exit code 2, info and show."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskdepth.cli import main
from maskdepth.runtime.image import read_image


def _cli(*args, cwd=None):
    cmd = [sys.executable, "-m", "maskdepth", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_help_lists_every_subcommand():
    done = _cli("--help")
    assert done.returncode == 0
    for name in ("data", "train", "eval", "export", "predict", "bench", "demo", "doctor"):
        assert name in done.stdout
    done = _cli("data", "--help")
    for verb in ("compose", "synth", "info", "show"):
        assert verb in done.stdout


def test_bad_dataset_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "bg").mkdir()
    done = _cli("data", "info", tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(tmp_path) in lines[0] and "no fg_bg/ folder or fg_bg.zip" in lines[0]


def test_missing_folder_is_one_line_and_exit_2(tmp_path):
    done = _cli("data", "show", tmp_path / "absent", "--out", tmp_path / "g.png")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()


def test_info_json_and_text(seed_dataset, capsys):
    root, truth = seed_dataset
    assert main(["data", "info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"kind", "scenes", "backgrounds", "size"} <= set(info)
    assert info["scenes"] == 6 and info["backgrounds"] == 2 and info["size"] == [32, 32]
    coverage = np.mean([t["mask"].mean() for t in truth.values()])
    assert info["mask"]["coverage_mean"] == pytest.approx(coverage, abs=1e-3)
    assert info["depth"]["min"] == pytest.approx(0.1, abs=1 / 255)
    assert main(["data", "info", str(root)]) == 0
    text = capsys.readouterr().out
    assert "scenes       6" in text and "32x32" in text


def test_info_skip_bad_counts_broken_scenes(seed_dataset, capsys):
    root, _ = seed_dataset
    (root / "fg_bg" / "1" / "2.png").write_bytes(b"\x89PNG broken")
    assert main(["data", "info", str(root), "--json"]) == 2
    assert "fg_bg/1/2.png: unreadable or truncated image" in capsys.readouterr().err
    assert main(["data", "info", str(root), "--json", "--skip-bad"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["skipped"] == 1 and info["sampled"] == 5


def test_show_writes_a_labelled_grid(seed_dataset, tmp_path):
    root, _ = seed_dataset
    out = tmp_path / "pictures" / "grid.png"
    assert main(["data", "show", str(root), "--out", str(out), "--count", "3"]) == 0
    grid = read_image(out)
    # a header strip, then three rows of four 160-pixel cells with 4-pixel gutters
    assert grid.shape == (22 + 4 + 3 * 160 + 2 * 4, 4 * 160 + 3 * 4, 3)
    header = grid[:22]
    assert header.min() < 100  # the column labels are drawn
    assert not list(out.parent.glob(".*.part"))


def _cutouts(folder, count=2, side=16):
    from maskdepth.runtime.image import write_image

    folder.mkdir(parents=True)
    for i in range(count):
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[2:-2, 2:-2] = (200, 30 * i, 90, 255)
        write_image(folder / f"cut{i}.png", rgba)


def test_compose_then_info_through_the_cli(tmp_path, capsys):
    from maskdepth.runtime.image import write_image

    (tmp_path / "bgs").mkdir()
    for i in range(2):
        write_image(tmp_path / "bgs" / f"room{i}.jpg", np.full((40, 60, 3), 60 * i, np.uint8))
    _cutouts(tmp_path / "cuts")
    out = tmp_path / "out"
    args = ["data", "compose", "--backgrounds", str(tmp_path / "bgs"), "--foregrounds"]
    args += [str(tmp_path / "cuts"), "--out", str(out), "--size", "32", "--fg-size", "16"]
    args += ["--positions", "3", "--workers", "1"]
    assert main(args) == 0
    assert "wrote 24 scenes (2 backgrounds)" in capsys.readouterr().out
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["scenes"], info["backgrounds"], info["size"]) == (24, 2, [32, 32])
    assert info["generator"] == "compose"
    assert main(args) == 2  # a second run refuses the non-empty --out
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--no-flip"]) == 0
    assert "wrote 12 scenes" in capsys.readouterr().out


def test_compose_bad_input_is_one_line_and_writes_nothing(tmp_path):
    _cutouts(tmp_path / "cuts")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    done = _cli(
        "data", "compose", "--backgrounds", tmp_path / "cuts", "--foregrounds", tmp_path / "empty",
        "--out", out,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'empty'}: no images found" in done.stderr
    assert not out.exists()


def test_synth_through_the_cli(tmp_path, capsys):
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--count", "6", "--size", "48"]
    assert main([*args, "--per-background", "3", "--workers", "1"]) == 0
    assert "wrote 6 scenes (2 backgrounds)" in capsys.readouterr().out
    assert len(list((out / "fg_bg").rglob("*.png"))) == 6
    assert json.loads((out / "manifest.json").read_text())["depth"]["scale_m"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["compose", "synth"])
def test_ctrl_c_stops_cleanly_and_marks_the_dataset_incomplete(tmp_path, verb):
    import os
    import signal
    import time

    from maskdepth.runtime.image import write_image

    out = tmp_path / "out"
    if verb == "compose":
        (tmp_path / "bgs").mkdir()
        for i in range(4):
            write_image(tmp_path / "bgs" / f"{i}.png", np.full((64, 64, 3), 50 * i, np.uint8))
        _cutouts(tmp_path / "cuts", count=8)
        args = ["--backgrounds", tmp_path / "bgs", "--foregrounds", tmp_path / "cuts"]
        args += ["--size", "64", "--positions", "400"]
    else:
        args = ["--count", "5000", "--size", "64"]
    cmd = [sys.executable, "-m", "maskdepth", "data", verb, *map(str, args), "--out", str(out)]
    process = subprocess.Popen(
        [*cmd, "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A shell's background job inherits SIGINT ignored; Ctrl-C is what is tested here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Ctrl-C once the run is under way: a scene written (the pool is up and working) and every
    # helper process (fork server, workers) past the point where it ignores SIGINT, as the
    # parent's to handle; before that, a worker would die of it with a traceback.
    deadline = time.monotonic() + 60
    while not (list(out.glob("fg_bg/*/*")) and _helpers_ignore_sigint(process.pid)):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"data {verb} never got under way: {process.communicate()[1][-2000:]}")
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"maskdepth data {verb}: interrupted"
    assert not list(out.rglob("*.part"))
    done = _cli("data", "info", out)
    assert done.returncode == 2 and "stopped before finishing this dataset" in done.stderr


def _helpers_ignore_sigint(leader: int) -> bool:
    """Whether every process of ``leader``'s session but ``leader`` itself ignores SIGINT
    (read from /proc: the signal mask each process set for itself)."""
    import signal

    helpers = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[3]) != leader or int(stat.parent.name) == leader:  # session, pid
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
        if not int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1)):
            return False
        helpers += 1
    return helpers > 0


@pytest.mark.slow
def test_train_on_a_truncated_jpg_says_one_line_and_how_to_skip(tmp_path, capfd):
    from conftest import write_seed_dataset

    root = tmp_path / "seed"
    write_seed_dataset(root, backgrounds=2, per_background=6, size=32, suffix=".jpg")
    for name in ("1/2", "1/3", "2/8"):  # three of twelve: the training split holds some
        broken = root / "fg_bg" / f"{name}.jpg"
        broken.write_bytes(broken.read_bytes()[:200])  # a download cut short
    args = ["train", "--data", str(root), "--size", "32", "--batch", "2", "--epochs", "1"]
    args += ["--threads", "1", "--workers", "2", "--model", "u2netp-lite", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ": unreadable or truncated image (--skip-bad skips broken scenes)" in err[0]
    assert "/fg_bg/" in err[0] and "Traceback" not in err[0]
    assert main([*args, "--skip-bad", "--out", str(tmp_path / "skipped")]) == 0


def test_doctor_says_what_this_machine_can_do(capsys):
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("  ")[0]: line for line in lines}
    assert {"cpu", "gpu", "onnxruntime", "run onnx cpu"} <= set(rows)
    assert " ok " in rows["run onnx cpu"]
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checks"]


def test_every_subcommand_reads_its_defaults_from_its_options_dataclass():
    """An option's argparse default is the dataclass field's: parsing nothing gives the
    dataclass's own defaults (required options and positionals given)."""
    from maskdepth.benchmarks.bench import BenchOptions
    from maskdepth.cli import build_parser
    from maskdepth.commands.predict import PredictOptions
    from maskdepth.export.options import ExportOptions
    from maskdepth.options import options_from

    parser = build_parser()
    cases = [
        (["export", "m.pt", "--out", "m.onnx"], lambda o: o.options, ExportOptions()),
        (["bench", "m.onnx", "--out", "b"], lambda o: o.options, BenchOptions()),
    ]
    for argv, part, expected in cases:
        args = parser.parse_args(argv)
        assert part(options_from(args.handler.options, args)) == expected
    args = parser.parse_args(["predict", "m.onnx", "--bg", "b", "--scene", "s", "--out", "o"])
    got = options_from(args.handler.options, args)
    paths = {"model": Path("m.onnx"), "bg": Path("b"), "scene": Path("s"), "out": Path("o")}
    assert got == PredictOptions(**paths)


def test_parsed_values_become_the_fields_types():
    from maskdepth.cli import build_parser
    from maskdepth.options import options_from

    argv = ["export", "m.pt", "--out", "m.onnx", "--size", "64", "96", "--raw-weights"]
    args = build_parser().parse_args([*argv, "--compute-capability", "8.6", "8.9"])
    options = options_from(args.handler.options, args).options
    assert options.size == (64, 96) and options.use_ema is False
    assert options.compute_capabilities == ("8.6", "8.9") and options.int8_exclude is None
    args = build_parser().parse_args(["bench", "m.onnx", "--out", "b", "--backend", "tensorrt"])
    assert options_from(args.handler.options, args).options.backends == ("tensorrt",)


def test_eval_splits_are_the_evaluators():
    pytest.importorskip("torch")
    from maskdepth.commands.evaluate import SPLITS
    from maskdepth.train.evaluate import SPLITS as EVALUATOR_SPLITS

    assert SPLITS == EVALUATOR_SPLITS


def test_a_bad_int8_exclude_is_one_line_and_exit_2(capsys):
    assert main(["export", "absent.pt", "--out", "x.onnx", "--int8-exclude", "side"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maskdepth export: error: --int8-exclude side")
