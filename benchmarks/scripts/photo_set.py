"""Two disjoint datasets composed the seed's way from real photographs found on this machine.

    apt-get install mate-backgrounds plasma-workspace-wallpapers tuxpaint-stamps-default
    python -m maskdepth.benchmarks.scripts.photo_set --out data/photos

Backgrounds are the photographs (not the drawings) among the MATE and Plasma wallpapers, three
square views of each; cut-outs are Tux Paint's photographic stamps (RGBA PNGs of animals, food,
plants, tools, vehicles), without its drawings. Photos and cut-outs are dealt alternately into
two groups that share no image: ``ablation/`` (to choose training defaults on) and ``report/``
(whose validation split is where the chosen recipe is scored), each composed by
:func:`maskdepth.train.data.compose.compose`: every background x every cut-out x (original,
mirror) x ``--positions``, JPG at the seed's quality, depth from the ground-plane rule.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image, write_image

MATE = Path("/usr/share/backgrounds/mate/nature")
PLASMA = Path("/usr/share/wallpapers")
STAMPS = Path("/usr/share/tuxpaint/stamps")
PACKAGES = "mate-backgrounds plasma-workspace-wallpapers tuxpaint-stamps-default"
# The photographs among the wallpapers (the others are drawings or gradients), by file name.
MATE_PHOTOS = [
    "Aqua",
    "Blinds",
    "Dune",
    "FreshFlower",
    "Garden",
    "GreenMeadow",
    "LadyBird",
    "RainDrops",
    "Storm",
    "TwoWings",
    "Wood",
    "YellowFlower",
]
PLASMA_PHOTOS = [
    "BytheWater",
    "ColdRipple",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "Volna",
    "summer_1am",
]
STAMP_FOLDERS = [
    "animals",
    "food",
    "plants",
    "household",
    "vehicles",
    "town/monuments",
    "hobbies",
    "people",
    "sports",
    "medical",
    "space",
]
# Drawings, outlines and effects among those folders (not photographs of objects).
NOT_PHOTOS = {
    "hedgehog", "walnut_shelled", "pizza", "inukshuk-outline", "eye", "rugby_goal_posts",
    "syringe", "tooth", "0_sun",
}  # fmt: skip
VIEWS = 3  # square views per wallpaper: left-top, centre, right-bottom, each 70% of the short side


def wallpapers() -> list[Path]:
    """The photographic wallpapers, largest file of each Plasma wallpaper."""
    paths = [MATE / f"{name}.jpg" for name in MATE_PHOTOS]
    for name in PLASMA_PHOTOS:
        images = sorted((PLASMA / name / "contents" / "images").glob("*.jpg"))
        paths += [max(images, key=lambda p: p.stat().st_size)] if images else []
    return paths


def stamps() -> list[Path]:
    """Tux Paint's photographic cut-outs (no mirrored copies, no drawings), sorted by path."""
    found = []
    for folder in STAMP_FOLDERS:
        for path in sorted((STAMPS / folder).rglob("*.png")):
            if path.stem.endswith("_mirror") or path.stem in NOT_PHOTOS or "cartoon" in path.parts:
                continue
            found.append(path)
    return found


def square_views(image, views: int = VIEWS) -> list:
    """``views`` square crops along the image's diagonal, each 70% of its short side."""
    height, width = image.shape[:2]
    side = int(0.7 * min(height, width))
    out = []
    for i in range(views):
        t = i / max(views - 1, 1)
        top, left = round(t * (height - side)), round(t * (width - side))
        out.append(image[top : top + side, left : left + side])
    return out


def stage_inputs(folder: Path, photos: list[Path], cutouts: list[Path]) -> tuple[Path, Path]:
    """Write the group's background views and copy its cut-outs under ``folder``."""
    bg_dir, fg_dir = folder / "backgrounds", folder / "foregrounds"
    for path in (bg_dir, fg_dir):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    for photo in photos:
        name = photo.stem if photo.parent == MATE else photo.parents[2].name
        for i, view in enumerate(square_views(read_image(photo))):
            write_image(bg_dir / f"{name}-{i}.jpg", view, 95)
    for stamp in cutouts:
        shutil.copyfile(stamp, fg_dir / f"{stamp.parent.name}-{stamp.name}")
    return bg_dir, fg_dir


def build(out: Path, cutouts: int, positions: int, size: int, overwrite: bool) -> dict:
    from maskdepth.train.data.compose import compose

    photos, fgs = wallpapers(), stamps()
    if len(photos) < 4 or len(fgs) < 2 * cutouts:
        raise MaskDepthError(
            f"found {len(photos)} photographic wallpapers and {len(fgs)} cut-outs; "
            f"install them with: apt-get install {PACKAGES}"
        )
    made = {}
    for group, name in enumerate(("ablation", "report")):
        # Every other photo; cut-outs spread over all folders (every other of an even stride).
        chosen_fgs = fgs[group::2][:: max(1, len(fgs) // (2 * cutouts))][:cutouts]
        inputs = stage_inputs(out / "inputs" / name, photos[group::2], chosen_fgs)
        made[name] = compose(
            out / name,
            *inputs,
            size=size,
            positions=positions,
            seed=group,
            overwrite=overwrite,
        )
        print(f"{name}: {made[name]['scenes']} scenes in {out / name}")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cutouts", type=int, default=24, help="cut-outs per group")
    parser.add_argument("--positions", type=int, default=1, help="random places per flip")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.cutouts, args.positions, args.size, args.overwrite)
    except MaskDepthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
