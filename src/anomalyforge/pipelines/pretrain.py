"""`pretrain_backbone`: TAB pretraining of a backbone folder from good TRAINING images only.

Each data path is one category (or a root of several); its class name is the folder name
(`juice_bottle` -> "juice bottle") unless `class_names` are given. Per class, at most
`max_good` good training images of the few-shot split are drawn (seeded, stream TAB); the
model-free generators (`methods`: perlin, cutpaste, nsa) are fitted on exactly those images and
make `anomalies_per_good` synthetic anomalies per image, so no real defect and no test image is
ever read. The encoder (`features.tab.TabEncoder`) is then trained epoch by epoch against fixed
text features; after every epoch the folder (`formats.backbone`) is rewritten, so an interrupted
pretraining resumes from its last finished epoch with the same command and gives the same weights.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from anomalyforge import __version__
from anomalyforge.atomic import check_output_dir, first_missing, remove_created
from anomalyforge.data import few_shot_split, load_datasets
from anomalyforge.data.fitdata import FitData
from anomalyforge.errors import ConfigError
from anomalyforge.features.backbone import pick_device
from anomalyforge.features.tab import (
    NO_TEXT,
    NO_TEXT_NOTE,
    TabConfig,
    TabEncoder,
    class_name_of,
    clip_text_features,
    orthonormal_prototypes,
    prompt_lists,
    tab_config,
    train_epoch,
)
from anomalyforge.formats.backbone import (
    BACKBONE_JSON,
    IDENTITY_KEYS,
    STATE,
    WEIGHTS,
    BackboneInfo,
    read_tensors,
    write_tensors,
)
from anomalyforge.formats.model import WeightsRef
from anomalyforge.formats.schema import refuse_other_job
from anomalyforge.seeds import Stream, numpy_rng, pair_seed, torch_generator
from anomalyforge.synth.base import get_generator

TAB_METHODS = ("perlin", "cutpaste", "nsa")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _classes(data: Sequence[str | Path], class_names: Sequence[str] | None, data_format: str | None,
             cfg: TabConfig, seed: int, progress: bool) -> list[tuple[dict[str, Any], FitData]]:
    """Per class: its record and a FitData holding only the good TRAINING images drawn for it."""
    out = []
    for path in data:
        for ds in load_datasets(path, data_format=data_format):
            split = few_shot_split(ds, progress=progress)
            split.check_disjoint()
            goods = list(split.train_good)
            if not goods:
                raise ConfigError(f"{path}: category {ds.category!r} has no good training images")
            if cfg.max_good is not None and len(goods) > cfg.max_good:
                pick = numpy_rng(seed, Stream.TAB).permutation(len(goods))[:cfg.max_good]
                goods = [goods[i] for i in sorted(pick)]
            test = {str(s.image) for s in split.test_good} | {str(s.image) for v in split.test_defects.values()
                                                               for s in v}
            assert not test & {str(s.image) for s in goods}  # never a test image
            fit = FitData(category=ds.category, size=cfg.size, defects={}, good=goods,
                          extra={"progress": progress}, mask_threshold=split.mask_threshold)
            fit.verify()
            rec: dict[str, Any] = {"name": ds.category, "class_name": class_name_of(ds.category),
                                   "data": str(Path(path).resolve()), "n_train_good": len(split.train_good),
                                   "n_used": len(goods),
                                   "used": [str(s.image) for s in goods]}
            out.append((rec, fit))
    if class_names:
        if len(class_names) != len(out):
            raise ConfigError(f"--class-name given {len(class_names)} time(s) for {len(out)} categories "
                              f"({', '.join(r['name'] for r, _ in out)})")
        for (rec, _), name in zip(out, class_names, strict=True):
            rec["class_name"] = str(name)
    names = [str(r["class_name"]) for r, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"class names repeat ({', '.join(names)}); give each category its own --class-name")
    return out


def _anomalies(fit: FitData, methods: Sequence[str], cfg: TabConfig, seed: int, progress: bool) -> np.ndarray:
    """`anomalies_per_good` synthetic anomalies per good image, methods taken in turn (seeded per pair)."""
    gens = []
    with tempfile.TemporaryDirectory(prefix="tab-state-") as tmp:
        for m in methods:
            g = get_generator(m)()
            g.fit(fit, Path(tmp) / m)
            gens.append(g)
        n = len(fit.good) * cfg.anomalies_per_good
        imgs = []
        for i in tqdm(range(n), desc=f"{fit.category}: synthetic anomalies", disable=not progress, leave=False):
            m = i % len(methods)
            pair = gens[m].generate("anomaly", [pair_seed(seed, f"tab:{fit.category}:{methods[m]}", i)])[0]
            imgs.append(pair.image)
    return np.stack(imgs)


def _text_features(text_encoder: str, names: list[str], cfg: TabConfig, seed: int,
                   device: torch.device) -> tuple[torch.Tensor, dict[str, Any]]:
    if text_encoder == NO_TEXT:
        return (orthonormal_prototypes(len(names), max(cfg.proto_dim, 2 * len(names)), seed),
                {"kind": "none", "id": None, "seed": int(seed), "note": NO_TEXT_NOTE})
    return clip_text_features(text_encoder, names, device)


def pretrain_backbone(data: Sequence[str | Path], out: str | Path, profile: str | TabConfig = "cpu",
                      class_names: Sequence[str] | None = None, text_encoder: str = NO_TEXT,
                      methods: Sequence[str] = TAB_METHODS, seed: int = 0, data_format: str | None = None,
                      device: str | None = None, progress: bool = True, **overrides: Any) -> BackboneInfo:
    """Pretrain a TAB backbone on the good training images of `data` and write the folder `out`.

    `text_encoder`: a CLIP hub id or local folder, or "none" (seeded orthonormal prototypes, no
    language). Resumes an unfinished folder made with the same options; returns the BackboneInfo.
    Options and input files are checked before anything is written."""
    cfg = tab_config(profile, **overrides)
    methods = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    bad = [m for m in methods if m not in TAB_METHODS]
    if not methods or bad:
        raise ConfigError(f"synthetic methods must be among {', '.join(TAB_METHODS)}, "
                          f"got {', '.join(methods) or 'none'}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if not data:
        raise ConfigError("give at least one --data folder")
    out = Path(out)
    check_output_dir(out, [Path(d) for d in data])
    classes = _classes(data, class_names, data_format, cfg, seed, progress)
    dev = pick_device(device)
    names = [r["class_name"] for r, _ in classes]
    text, text_id = _text_features(text_encoder, names, cfg, seed, dev)
    info = BackboneInfo(arch=cfg.arch, init=cfg.init, weights=WeightsRef(WEIGHTS, "", 0), profile=cfg.name,
                        config=cfg.to_dict(),
                        categories=[r for r, _ in classes], methods=methods, text_encoder=text_id,
                        prompts=prompt_lists(), seed=seed, version=__version__,
                        created=datetime.now(UTC).isoformat(timespec="seconds"))
    resume = None
    if (out / BACKBONE_JSON).is_file():
        resume = BackboneInfo.read(out)
        refuse_other_job(out, resume.to_dict(), info.to_dict(), IDENTITY_KEYS, what="pretraining")
        if resume.complete:
            return resume
    created = first_missing(out)
    try:
        return _train(out, cfg, classes, methods, text, info, resume, seed, dev, progress)
    except BaseException:
        if resume is None and not (out / BACKBONE_JSON).is_file():
            remove_created(created)
        raise


def _train(out: Path, cfg: TabConfig, classes: list[tuple[dict[str, Any], FitData]], methods: list[str],
           text: torch.Tensor, info: BackboneInfo, resume: BackboneInfo | None, seed: int, dev: torch.device,
           progress: bool) -> BackboneInfo:
    normal, normal_cls, anomal, anomal_cls = [], [], [], []
    for c, (_, fit) in enumerate(classes):
        goods = np.stack([fit.image(s) for s in fit.good])
        anoms = _anomalies(fit, methods, cfg, seed, progress)
        normal.append(goods)
        anomal.append(anoms)
        normal_cls.append(np.full(len(goods), c))
        anomal_cls.append(np.full(len(anoms), c))
    xn, yn, xa, ya = (np.concatenate(v) for v in (normal, normal_cls, anomal, anomal_cls))
    torch.manual_seed(seed)
    model = TabEncoder(cfg.arch, cfg.init, text.shape[-1]).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    start = 0
    if resume is not None and resume.state is not None and resume.epochs_done:
        state = read_tensors(out, resume.state)
        model.stages.load_state_dict(read_tensors(out, resume.weights))
        model.proj.load_state_dict({k.removeprefix("proj."): v for k, v in state.items() if k.startswith("proj.")})
        text = state["text"]
        params = list(model.parameters())
        for i, p in enumerate(params):
            if f"momentum.{i}" in state:
                opt.state[p]["momentum_buffer"] = state[f"momentum.{i}"].to(dev)
        info.history, info.created, info.weights = list(resume.history), resume.created, resume.weights
        start = resume.epochs_done
    out.mkdir(parents=True, exist_ok=True)
    steps = -(-len(xn) // max(1, cfg.batch_size // 2))
    bar = tqdm(total=steps * (cfg.epochs - start), desc="pretrain backbone", disable=not progress)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch_generator(pair_seed(seed, "tab-epoch", epoch), Stream.TAB)
        loss = train_epoch(model, opt, xn, yn, xa, ya, text, cfg, gen, dev, bar if progress else None)
        info.weights = write_tensors(out, WEIGHTS, model.stages.state_dict())
        state_t = {f"proj.{k}": v for k, v in model.proj.state_dict().items()}
        state_t["text"] = text
        for i, p in enumerate(model.parameters()):
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state_t[f"momentum.{i}"] = buf
        info.state = write_tensors(out, STATE, state_t)
        info.epochs_done = epoch + 1
        info.complete = epoch + 1 == cfg.epochs
        info.history.append({"epoch": epoch + 1, "loss": round(loss, 5), "time_s": round(time.perf_counter() - t0, 2),
                             "peak_rss_mb": round(_peak_rss_mb(), 1), "images": int(len(xn) + len(xa))})
        info.write(out)  # last: weights and state of this epoch are on disk
    bar.close()
    return info
