"""Read a dataset in the seed's layout, from folders or zips, without extracting anything.

    bg/{k}.jpg   fg_bg/{k}/{n}.jpg   fg_bg_mask/{k}/{n}.jpg   dense_depth/{k}/{n}.jpg

Each tree may also be ``{tree}.zip`` beside the others. Indexing lists each tree once; samples
are decoded with OpenCV only when asked for.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import IMAGE_SUFFIXES, decode_image, to_unit

from .layout import BG, DEPTH, MASK, SCENE
from .manifest import read_manifest
from .sample import Sample
from .trees import FolderTree, ZipTree, open_tree

_BG_CACHE = 16  # decoded backgrounds kept per process (thousands of scenes share one)


def _split_names(names: list[str], nested: bool) -> dict[tuple[int, int] | int, str]:
    """Map (k, n) (or k for bg) to the file name, for names like ``k/n.jpg`` (or ``k.jpg``)."""
    found: dict = {}
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        if not dot or "." + suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if nested:
            folder, _, scene = stem.partition("/")
            if folder.isdigit() and scene.isdigit():
                found[(int(folder), int(scene))] = name
        elif stem.isdigit():
            found[int(stem)] = name
    return found


class SeedLayoutSource:
    """Every scene that has a mask, a depth map and a background, sorted by (k, n).

    ``skip_bad`` drops scenes with a missing mask, depth or background (counted in
    ``skipped``) instead of refusing the dataset. Masks saved as noisy JPGs are binarised at 0.5
    unless ``binarize_mask`` is False.
    """

    def __init__(
        self, root: str | Path, binarize_mask: bool = True, skip_bad: bool = False
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MaskDepthError(f"{self.root}: no such dataset folder")
        self.binarize_mask = binarize_mask
        self.manifest = read_manifest(self.root)
        self.trees = {name: self._open(name) for name in (BG, SCENE, MASK, DEPTH)}
        kinds = {type(t) for t in self.trees.values()}
        storage = "zips" if kinds == {ZipTree} else "folders" if kinds == {FolderTree} else "mixed"
        self.kind = f"seed-layout ({storage})"
        self.skipped: list[str] = []
        self._index(skip_bad)
        self._bg_cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _open(self, tree: str) -> FolderTree | ZipTree:
        opened = open_tree(self.root, tree)
        if opened is None:
            raise MaskDepthError(
                f"{self.root}: no {tree}/ folder or {tree}.zip; expected the seed's layout "
                "bg/{k}.jpg, fg_bg/{k}/{n}.jpg, fg_bg_mask/{k}/{n}.jpg, dense_depth/{k}/{n}.jpg"
            )
        return opened

    def _index(self, skip_bad: bool) -> None:
        bgs = _split_names(self.trees[BG].names(), nested=False)
        scenes = _split_names(self.trees[SCENE].names(), nested=True)
        masks = _split_names(self.trees[MASK].names(), nested=True)
        depths = _split_names(self.trees[DEPTH].names(), nested=True)
        if not scenes:
            where = self.trees[SCENE].location
            raise MaskDepthError(f"{where}: no scenes named {{k}}/{{n}}.jpg; expected the layout")
        problems = []
        for key in sorted(scenes):
            k, n = key
            suffix = scenes[key].rpartition(".")[2]
            for tree, table in ((MASK, masks), (DEPTH, depths)):
                if key not in table:
                    expected = self.trees[tree].describe(f"{k}/{n}.{suffix}")
                    problems.append((key, f"{expected}: missing for {SCENE}/{scenes[key]}"))
            if k not in bgs:
                expected = self.trees[BG].describe(f"{k}.{suffix}")
                problems.append((key, f"{expected}: missing for {SCENE}/{scenes[key]}"))
        with_scenes = {k for k, _ in scenes}
        empty = [k for k in sorted(bgs) if k not in with_scenes]
        self._refuse_or_skip(problems, empty, bgs, skip_bad)
        bad = {key for key, _ in problems}
        keys = [key for key in sorted(scenes) if key not in bad]
        self._keys = np.array(keys, np.int64).reshape(-1, 2)
        self._names = {key: (scenes[key], masks[key], depths[key]) for key in keys}
        self._bg_names = bgs

    def _refuse_or_skip(self, problems: list, empty: list[int], bgs: dict, skip_bad: bool) -> None:
        if not skip_bad and problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise MaskDepthError(
                f"{problems[0][1]}{more}; every scene needs a background, a mask and a depth "
                "map (--skip-bad leaves such scenes out)"
            )
        if not skip_bad and empty:
            raise MaskDepthError(
                f"{self.trees[BG].describe(bgs[empty[0]])}: background has no scenes under "
                f"{SCENE}/{empty[0]}/ (--skip-bad ignores it)"
            )
        self.skipped = [message for _, message in problems]

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def backgrounds(self) -> int:
        return len(np.unique(self._keys[:, 0])) if len(self) else 0

    def background_ids(self) -> np.ndarray:
        return self._keys[:, 0].copy()

    def name(self, index: int) -> str:
        k, n = self._keys[index]
        return f"{k}/{n}"

    def _background(self, k: int) -> np.ndarray:
        if k in self._bg_cache:
            self._bg_cache.move_to_end(k)
            return self._bg_cache[k]
        name = self._bg_names[k]
        image = decode_image(self.trees[BG].read(name), self.trees[BG].describe(name), "rgb")
        self._bg_cache[k] = image
        if len(self._bg_cache) > _BG_CACHE:
            self._bg_cache.popitem(last=False)
        return image

    def _read(self, tree: str, name: str, mode: str) -> np.ndarray:
        return decode_image(self.trees[tree].read(name), self.trees[tree].describe(name), mode)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"scene {index} of {len(self)}")
        k, n = (int(v) for v in self._keys[index])
        scene_name, mask_name, depth_name = self._names[(k, n)]
        mask = to_unit(self._read(MASK, mask_name, "gray"))
        if self.binarize_mask:
            mask = (mask >= 0.5).astype(np.float32)
        return Sample(
            bg=self._background(k),
            scene=self._read(SCENE, scene_name, "rgb"),
            mask=mask,
            depth=to_unit(self._read(DEPTH, depth_name, "gray")),
            name=self.trees[SCENE].describe(scene_name),
        ).check()
