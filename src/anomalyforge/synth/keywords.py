"""TVG's keyword-to-prompt generator: WordNet candidate keywords, prompt "a {class} with {keyword}".

The candidates come from the class name's WordNet neighbourhood (noun senses): its hypernyms,
hyponyms (to depth 2) and part / substance / member meronyms, then the same relations of those
neighbours, breadth first, until `max_keywords` (TVG: 1,000) distinct lemma names are found. A
class name such as "magnetic_tile" that WordNet lacks falls back to its last word ("tile").
With a CLIP model, `choose_prompt` picks the candidate prompt whose text embedding is closest to
the good images' mean image embedding (TVG searches 100 iterations for it; the candidates are
few enough here to score them all).

WordNet is read offline from Debian's `wordnet-base` files (/usr/share/wordnet, or the folder in
$ANOMALYFORGE_WORDNET) with nltk's `WordNetCorpusReader`. That package lacks the `lexnames`
index nltk needs (45 fixed lexicographer file names, lexnames(5WN)), so a folder with
copies of the database files (nltk refuses symlinks and hard links out of a reader's root) and
the written `lexnames` is kept under the user cache ($XDG_CACHE_HOME/anomalyforge/wordnet); that
folder is authorised for nltk's path sandbox the supported way, by adding it to
`nltk.data.path`. Without the data: one warning line and the class name alone.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalyforge.atomic import copy_atomic, write_text_atomic
from anomalyforge.diffusion.clip import Clip
from anomalyforge.errors import ConfigError

WORDNET_DIRS = ("/usr/share/wordnet",)
WORDNET_FILES = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")) + (
    "noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev")
LEXNAMES = (  # WordNet 3.0 lexicographer files, lexnames(5WN): number, name, syntactic category
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1", "noun.artifact 1",
    "noun.attribute 1", "noun.body 1", "noun.cognition 1", "noun.communication 1", "noun.event 1",
    "noun.feeling 1", "noun.food 1", "noun.group 1", "noun.location 1", "noun.motive 1", "noun.object 1",
    "noun.person 1", "noun.phenomenon 1", "noun.plant 1", "noun.possession 1", "noun.process 1",
    "noun.quantity 1", "noun.relation 1", "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1",
    "verb.body 2", "verb.change 2", "verb.cognition 2", "verb.communication 2", "verb.competition 2",
    "verb.consumption 2", "verb.contact 2", "verb.creation 2", "verb.emotion 2", "verb.motion 2",
    "verb.perception 2", "verb.possession 2", "verb.social 2", "verb.stative 2", "verb.weather 2",
    "adj.ppl 3")


def wordnet_source() -> Path | None:
    """The folder with WordNet's database files ($ANOMALYFORGE_WORDNET, else /usr/share/wordnet), or None."""
    env = os.environ.get("ANOMALYFORGE_WORDNET", "").strip()
    for d in ((env,) if env else WORDNET_DIRS):
        if (Path(d) / "data.noun").is_file() and (Path(d) / "index.noun").is_file():
            return Path(d).resolve()
    return None


def _reader_folder(src: Path) -> Path:
    """`src` itself if it has `lexnames`, else a cache folder linking to its files plus `lexnames`."""
    if (src / "lexnames").is_file():
        return src
    base = Path(os.environ.get("XDG_CACHE_HOME", "") or Path.home() / ".cache") / "anomalyforge" / "wordnet"
    folder = base / f"{zlib.crc32(str(src).encode()):08x}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:  # nltk refuses symlinks out of its root and hard links: copies (28 MB, once)
        dest, target = folder / name, src / name
        if target.is_file() and not dest.is_file():
            copy_atomic(target, dest)
    lexnames = "".join(f"{i:02d}\t{entry.replace(' ', chr(9))}\n" for i, entry in enumerate(LEXNAMES))
    if not (folder / "lexnames").is_file():
        write_text_atomic(folder / "lexnames", lexnames)
    return folder


@functools.cache
def _wordnet(src: str) -> Any:
    """nltk's WordNet reader on the Debian database in `src` (cached per process)."""
    import nltk  # lazy: nltk is only needed for keyword prompts
    from nltk.corpus.reader.wordnet import WordNetCorpusReader  # lazy: as above

    folder = _reader_folder(Path(src))
    if str(folder) not in nltk.data.path:  # authorise exactly this folder in nltk's path sandbox
        nltk.data.path.append(str(folder))
    class WordNet30(WordNetCorpusReader):
        """Debian's database is WordNet 3.0 itself: the 3.0 map (for multilingual OMW data only,
        read from nltk's own wordnet package and Debian's absent index.sense) is the identity."""

        def map_wn(self, version: str = "wordnet") -> None:
            if self.get_version() != "3.0":
                raise ConfigError(f"{src}: WordNet {self.get_version()} found; keyword prompts need WordNet 3.0")

    with warnings.catch_warnings():  # "multilingual functions are not available": no OMW wanted
        warnings.simplefilter("ignore", UserWarning)
        return WordNet30(str(folder), None)


def load_wordnet(warn: bool = True) -> Any | None:
    """The WordNet reader, or None (with one warning line on stderr) when the data is missing."""
    src = wordnet_source()
    if src is None:
        if warn:
            print("warning: WordNet data not found (/usr/share/wordnet or $ANOMALYFORGE_WORDNET; "
                  "`apt-get install wordnet-base`): keyword prompts use the class name alone", file=sys.stderr)
        return None
    return _wordnet(str(src))


def class_words(category: str) -> str:
    """The class name as prompt text: "juice_bottle" -> "juice bottle"."""
    return " ".join(category.replace("-", "_").split("_")).strip()


def candidate_keywords(category: str, max_keywords: int = 1000, wordnet: Any | None = None) -> list[str]:
    """Up to `max_keywords` distinct keywords from the WordNet neighbourhood of `category`
    (breadth first, in WordNet's order, so the list is deterministic); [] without WordNet or when
    neither the name nor its last word is a WordNet noun."""
    if wordnet is None or max_keywords < 1:
        return []
    words = category.lower().replace("-", "_").split("_")
    synsets = wordnet.synsets("_".join(words), pos="n") or wordnet.synsets(words[-1], pos="n")
    own = {"_".join(words), words[-1]}
    out: dict[str, None] = {}
    seen = set(synsets)
    frontier = list(synsets)
    while frontier and len(out) < max_keywords:
        nxt = []
        for s in frontier:
            related = (s.hypernyms() + s.hyponyms() + s.part_meronyms() + s.substance_meronyms()
                       + s.member_meronyms() + s.part_holonyms())
            for r in related:
                for lemma in r.lemma_names():
                    if lemma.lower() not in own:
                        out.setdefault(lemma.replace("_", " ").lower())
                if r not in seen:
                    seen.add(r)
                    nxt.append(r)
        frontier = nxt
    return list(out)[:max_keywords]


def prompts_for(category: str, keywords: Sequence[str]) -> list[str]:
    """TVG's prompts "a {class} with {keyword}", or "a {class}" when there are no keywords."""
    name = class_words(category)
    return [f"a {name} with {k}" for k in keywords] or [f"a {name}"]


@torch.no_grad()
def choose_prompt(images: torch.Tensor, prompts: Sequence[str], clip: Clip) -> tuple[str, float]:
    """The prompt closest (cosine) to the mean CLIP embedding of `images` (B, 3, H, W) in [-1, 1],
    and its similarity. Ties go to the earlier prompt."""
    img = clip.image_embeddings(images).mean(0)
    img = img / img.norm().clamp_min(1e-12)
    sims = (clip.text_embeddings(list(prompts)) @ img).cpu().numpy()
    best = int(np.argmax(sims))
    return prompts[best], float(sims[best])
