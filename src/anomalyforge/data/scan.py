"""Folder scanning shared by the readers: listing images, matching masks, checking sizes.

Every check that runs on a whole dataset reads image headers only (`io.image_size`), so loading
stays fast; pixels are decoded later, and only where needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from anomalyforge.data.io import IMAGE_EXTENSIONS, image_size, is_image_file, verify_image
from anomalyforge.data.natsort import natural_sorted
from anomalyforge.data.types import GOOD, Sample, SplitName
from anomalyforge.errors import DataError


def require_dir(path: Path) -> Path:
    """`path` if it is a folder, else a DataError saying it is missing or not a folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "folder not found")
    if not path.is_dir():
        raise DataError(path, "not a folder")
    return path


def subdirs(path: Path) -> list[Path]:
    """Visible sub-folders of `path`, naturally sorted."""
    return natural_sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
                          key=lambda p: p.name)


def list_images(folder: Path, *, required: bool = False, what: str = "folder") -> list[Path]:
    """Image files directly inside `folder`, naturally sorted by name.

    With `required`, a folder without images is a DataError naming it (e.g. an empty defect type).
    """
    folder = Path(folder)
    images = natural_sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name) \
        if folder.is_dir() else []
    if required and not images:
        raise DataError(folder, f"{what} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return images


def has_images(folder: Path) -> bool:
    """True when `folder` directly holds at least one image file."""
    return folder.is_dir() and any(is_image_file(p) for p in folder.iterdir())


def find_mask(folder: Path, stem: str, suffixes: Sequence[str] = ("", "_mask")) -> Path | None:
    """The mask for image `stem` in `folder`: `<stem><suffix>.<any image ext>` or a folder `<stem>/`.

    Extensions may differ from the image's (BTAD ships .bmp images with .png masks).
    """
    if not folder.is_dir():
        return None
    for suffix in suffixes:
        for ext in IMAGE_EXTENSIONS:
            for cand in (folder / f"{stem}{suffix}{ext}", folder / f"{stem}{suffix}{ext.upper()}"):
                if cand.is_file():
                    return cand
    cand = folder / stem
    if cand.is_dir():
        return cand
    return None


def good_samples(images: Iterable[Path], category: str, split: SplitName) -> list[Sample]:
    """Samples for defect-free images."""
    return [Sample(image=p, mask=None, label="good", defect_type=GOOD, category=category,
                   split=split, id=p.stem) for p in images]


def defect_sample(image: Path, mask: Path | None, defect_type: str, category: str,
                  split: SplitName, warnings: list[str]) -> Sample:
    """A defect sample whose mask (if any) has been checked against its image by header reads.

    A missing mask becomes a warning (the image stays usable for image-level tests); a mask whose
    size differs from its image is a DataError naming the mask.
    """
    if mask is None:
        warnings.append(f"defect image without mask: {image}")
    else:
        iw, ih = image_size(image)
        mw, mh = image_size(mask)
        if (iw, ih) != (mw, mh):
            raise DataError(mask, f"mask is {mw}x{mh} but its image {image.name} is {iw}x{ih}")
    return Sample(image=image, mask=mask, label="defect", defect_type=defect_type,
                  category=category, split=split, id=image.stem)


def check_images(samples: Iterable[Sample]) -> None:
    """Header-read every good image so unreadable files fail at load time, naming the file."""
    for s in samples:
        if s.label == "good":
            image_size(s.image)


MAX_LISTED = 10  # bad files named in one error; the rest are counted


def verify_samples(samples: Iterable[Sample], what: str = "training images") -> None:
    """Decode every image and mask of `samples` and check each mask's size against its image.

    Collects every bad file and raises one DataError naming them all (the first MAX_LISTED, then a
    count), so a run fails before it writes anything instead of when it first draws a bad file.
    """
    bad: list[tuple[Path, str]] = []
    for s in samples:
        try:
            wh = verify_image(s.image)
        except DataError as exc:
            bad.append((exc.path or s.image, exc.problem))
            continue
        if s.mask is None:
            continue
        try:
            mwh = verify_image(s.mask)
        except DataError as exc:
            bad.append((exc.path or s.mask, exc.problem))
            continue
        if mwh != wh:
            bad.append((s.mask, f"mask is {mwh[0]}x{mwh[1]} but its image {s.image.name} is {wh[0]}x{wh[1]}"))
    raise_bad_files(bad, what)


def raise_bad_files(bad: Sequence[tuple[Path, str]], what: str) -> None:
    """One DataError for every (file, problem) in `bad`: the file itself when there is one, else
    the count and the first MAX_LISTED files with their problems. Nothing when `bad` is empty."""
    if len(bad) == 1:
        raise DataError(*bad[0])
    if bad:
        listed = "; ".join(f"{p}: {why}" for p, why in bad[:MAX_LISTED])
        more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise DataError(None, f"{len(bad)} bad {what}: {listed}{more}")


def orphan_masks(folder: Path, used: Iterable[Path | None], warnings: list[str]) -> None:
    """Warn about masks in `folder` (files or LOCO per-image mask folders) that no image uses."""
    if not folder.is_dir():
        return
    used_set = {Path(p) for p in used if p is not None}
    for p in natural_sorted(folder.iterdir(), key=lambda p: p.name):
        if p.name.startswith(".") or p in used_set or not (p.is_dir() or is_image_file(p)):
            continue
        warnings.append(f"mask without image: {p}; it is not used")


def unused_masks(path: Path, samples: list[Sample], warnings: list[str]) -> None:
    """Warn about masks under `ground_truth/` that no defect image uses (orphans, or a whole
    `ground_truth/<type>` without a `test/<type>`): they are silently ignored otherwise."""
    gt = path / "ground_truth"
    for folder in subdirs(gt) if gt.is_dir() else []:
        if not (path / "test" / folder.name).is_dir():
            warnings.append(f"mask folder without a defect image folder (no test/{folder.name}): {folder}; "
                            f"its masks are not used")
            continue
        orphan_masks(folder, [s.mask for s in samples if s.defect_type == folder.name], warnings)

