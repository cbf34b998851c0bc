import zipfile

import numpy as np
import pytest
from conftest import write_seed_dataset, zip_trees

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.train.data import trees
from maskdepth.train.data.seed_layout import SeedLayoutSource
from maskdepth.train.data.sources import open_source


def _assert_matches(source, truth):
    assert len(source) == len(truth)
    for i, (k, n) in enumerate(sorted(truth)):
        sample, want = source[i], truth[(k, n)]
        assert sample.name.endswith(f"{k}/{n}.png")
        np.testing.assert_array_equal(sample.bg, want["bg"])
        np.testing.assert_array_equal(sample.scene, want["scene"])
        np.testing.assert_array_equal(sample.mask, want["mask"])
        np.testing.assert_allclose(sample.depth, want["depth"], atol=1 / 255)


def test_folders_read_back_exactly(seed_dataset):
    root, truth = seed_dataset
    source = open_source(root)
    assert source.kind == "seed-layout (folders)"
    assert source.backgrounds == 2
    np.testing.assert_array_equal(source.background_ids(), [1, 1, 1, 2, 2, 2])
    _assert_matches(source, truth)


@pytest.mark.parametrize("top", [True, False])
def test_zips_read_without_extracting(tmp_path, top):
    root = tmp_path / "seed"
    truth = write_seed_dataset(root)
    zip_trees(root, top=top)
    assert not (root / "fg_bg").exists()
    source = SeedLayoutSource(root)
    assert source.kind == "seed-layout (zips)"
    _assert_matches(source, truth)
    assert sorted(p.name for p in root.iterdir()) == [
        "bg",
        "dense_depth.zip",
        "fg_bg.zip",
        "fg_bg_mask.zip",
    ]


def test_zip_index_is_cached(tmp_path, monkeypatch):
    root = tmp_path / "seed"
    truth = write_seed_dataset(root)
    zip_trees(root)
    SeedLayoutSource(root)
    assert len(list(trees.cache_dir().glob("*.npz"))) == 3

    def no_parsing(*args, **kwargs):
        raise AssertionError("the zip's central directory was parsed again")

    monkeypatch.setattr(trees, "_read_central_directory", no_parsing)
    _assert_matches(SeedLayoutSource(root), truth)


def test_stored_zip_members_and_crc_check(tmp_path):
    root = tmp_path / "seed"
    write_seed_dataset(root, backgrounds=1, per_background=2)
    with zipfile.ZipFile(root / "fg_bg.zip", "w", zipfile.ZIP_STORED) as archive:
        for path in sorted((root / "fg_bg").rglob("*.png")):
            archive.write(path, path.relative_to(root).as_posix())
    stored = (root / "fg_bg" / "1" / "1.png").read_bytes()
    import shutil

    shutil.rmtree(root / "fg_bg")
    source = SeedLayoutSource(root)
    assert source.trees["fg_bg"].names()[0] == "1/1.png"
    assert source.trees["fg_bg"].read(0) == stored
    data = bytearray((root / "fg_bg.zip").read_bytes())
    at = data.find(stored[100:120])
    data[at] ^= 0xFF  # corrupt one byte inside the first member
    (root / "fg_bg.zip").write_bytes(bytes(data))
    with pytest.raises(MaskDepthError, match="CRC mismatch"):
        SeedLayoutSource(root)[0]


def test_noisy_masks_are_binarised_unless_turned_off(tmp_path):
    root = tmp_path / "seed"
    write_seed_dataset(root, backgrounds=1, per_background=1, suffix=".jpg")
    binary = SeedLayoutSource(root)[0].mask
    raw = SeedLayoutSource(root, binarize_mask=False)[0].mask
    assert set(np.unique(binary)) <= {0.0, 1.0}
    assert len(np.unique(raw)) > 2  # JPEG noise around the square's edges
    np.testing.assert_array_equal(binary, (raw >= 0.5).astype(np.float32))


def test_many_scenes_index_in_one_listing_per_tree(tmp_path):
    """20,000 scenes (names only) index quickly through the zip path and give the right count."""
    root = tmp_path / "seed"
    (root / "bg").mkdir(parents=True)
    for k in range(1, 11):
        (root / "bg" / f"{k}.jpg").write_bytes(b"x")
    for tree in ("fg_bg", "fg_bg_mask", "dense_depth"):
        with zipfile.ZipFile(root / f"{tree}.zip", "w", zipfile.ZIP_STORED) as archive:
            for n in range(1, 20001):
                archive.writestr(f"{tree}/{(n - 1) // 2000 + 1}/{n}.jpg", b"")
    source = SeedLayoutSource(root)
    assert len(source) == 20000 and source.backgrounds == 10
    assert source.name(19999) == "10/20000"


# Bad input: every case is one MaskDepthError naming the path and what was expected.


def test_missing_tree(seed_dataset):
    root, _ = seed_dataset
    import shutil

    shutil.rmtree(root / "dense_depth")
    with pytest.raises(MaskDepthError, match=r"no dense_depth/ folder or dense_depth.zip"):
        SeedLayoutSource(root)


def test_missing_mask_names_the_expected_path_and_skip_bad_drops_it(seed_dataset):
    root, _ = seed_dataset
    (root / "fg_bg_mask" / "2" / "5.png").unlink()
    with pytest.raises(MaskDepthError, match=r"fg_bg_mask/2/5.png: missing for fg_bg/2/5.png"):
        SeedLayoutSource(root)
    source = SeedLayoutSource(root, skip_bad=True)
    assert len(source) == 5 and source.skipped == 1


def test_background_without_scenes(seed_dataset):
    root, _ = seed_dataset
    (root / "bg" / "3.png").write_bytes((root / "bg" / "1.png").read_bytes())
    with pytest.raises(MaskDepthError, match=r"bg/3.png: background has no scenes under fg_bg/3/"):
        SeedLayoutSource(root)
    assert len(SeedLayoutSource(root, skip_bad=True)) == 6


def test_scene_without_background(seed_dataset):
    root, _ = seed_dataset
    (root / "bg" / "2.png").unlink()
    with pytest.raises(MaskDepthError, match=r"bg/2.png: missing"):
        SeedLayoutSource(root)


def test_mismatched_sizes(seed_dataset):
    root, _ = seed_dataset
    from maskdepth.runtime.image import write_image

    write_image(root / "fg_bg_mask" / "1" / "2.png", np.zeros((16, 16), np.uint8))
    source = SeedLayoutSource(root)
    with pytest.raises(
        MaskDepthError, match=r"1/2.png: mask is \(16, 16\), the scene is \(32, 32\)"
    ):
        source[1]


def test_truncated_and_unreadable_images(tmp_path):
    root = tmp_path / "seed"
    write_seed_dataset(root, suffix=".jpg")
    path = root / "fg_bg" / "1" / "1.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    (root / "dense_depth" / "2" / "4.jpg").write_bytes(b"not an image at all")
    source = SeedLayoutSource(root)
    with pytest.raises(MaskDepthError, match=r"fg_bg/1/1.jpg: unreadable or truncated image"):
        source[0]
    with pytest.raises(MaskDepthError, match=r"dense_depth/2/4.jpg: unreadable or truncated"):
        source[3]
    assert source[1].scene.shape == (32, 32, 3)


def test_zip_with_another_layout(tmp_path):
    root = tmp_path / "seed"
    write_seed_dataset(root)
    import shutil

    shutil.rmtree(root / "fg_bg")
    with zipfile.ZipFile(root / "fg_bg.zip", "w") as archive:
        archive.writestr("images/scene_0001.jpg", b"")
    with pytest.raises(MaskDepthError, match=r"fg_bg.zip: no scenes named \{k\}/\{n\}.jpg"):
        SeedLayoutSource(root)


def test_not_a_zip(seed_dataset):
    root, _ = seed_dataset
    import shutil

    shutil.rmtree(root / "fg_bg")
    (root / "fg_bg.zip").write_bytes(b"PK but not really")
    with pytest.raises(MaskDepthError, match=r"fg_bg.zip: not a readable zip file"):
        SeedLayoutSource(root)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(MaskDepthError, match=r"no such dataset folder"):
        open_source(tmp_path / "nowhere")


def test_stray_files_are_ignored(seed_dataset):
    root, truth = seed_dataset
    (root / "fg_bg" / "1" / "Thumbs.db").write_bytes(b"junk")
    (root / "fg_bg" / "notes.txt").write_text("made by hand")
    (root / "bg" / "README").write_text("backgrounds")
    _assert_matches(SeedLayoutSource(root), truth)


def test_fast_zip_listing_matches_zipfile_and_odd_zips_fall_back(tmp_path):
    root = tmp_path / "seed"
    truth = write_seed_dataset(root)
    zip_trees(root)
    names, fields = trees._scan_central_directory(root / "fg_bg.zip")
    infos = trees._read_central_directory(root / "fg_bg.zip")
    assert names == [i.filename for i in infos]
    assert [list(f[:4]) for f in fields] == [
        [i.header_offset, i.compress_size, i.compress_type, i.CRC] for i in infos
    ]
    # data before the archive (a self-extracting stub) takes zipfile's path and reads the same
    archive = root / "fg_bg.zip"
    archive.write_bytes(b"#!stub\n" * 20 + archive.read_bytes())
    assert trees._scan_central_directory(archive) is None
    _assert_matches(SeedLayoutSource(root), truth)


def test_macos_zip_resource_forks_are_ignored(tmp_path):
    root = tmp_path / "seed"
    truth = write_seed_dataset(root)
    zip_trees(root)
    with zipfile.ZipFile(root / "fg_bg.zip", "a") as archive:
        archive.writestr("__MACOSX/fg_bg/1/._1.png", b"\x00\x05\x16\x07")
    _assert_matches(SeedLayoutSource(root), truth)
