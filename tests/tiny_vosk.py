"""A tiny but complete Vosk model, built locally for tests (Debian ``libfst-tools``).

No en/de/ru Vosk model can be installed from a package registry. This one runs the real
Vosk/Kaldi code path (model loading, MFCC, nnet3, HCLG decoding, lattice word alignment), but its
words are garbage: only its timings mean something (they follow loud vs. quiet stretches of the
audio). Used by tests/test_model_recognition.py, tests/test_embedded_deciders.py and the contract
BrainBox's Vosk resources (tests/contract/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

from chara_resources.embedded.recognition import MissingToolError

_TINY_FORMAT = 1
_TINY_STAMP = "chara-tiny-model.json"
_TINY_SAMPLE_RATE = 16000
_TINY_NUM_CEPS = 13
# The network is one affine layer + log-softmax on 13 MFCCs. With --use-energy the first MFCC is
# the frame's log energy (natural log of the sum of squared 16-bit samples over 25 ms): about
# 20-23 for speech, below 0 for digital silence. Pdf 0 (silence) scores ENERGY_SCALE * (T - E),
# word pdfs ENERGY_SCALE * (E - T): loud frames decode as words, quiet ones as silence, so word
# timings follow the speech. A small seeded random projection of the other 12 MFCCs decides *which*
# word (garbage, but driven by the audio).
_TINY_ENERGY_THRESHOLD = 12.0
_TINY_ENERGY_SCALE = 1.0
_TINY_RANDOM_SCALE = 0.05
_TINY_SELF_LOOP_PROB = 0.75
_TINY_WORD_PENALTY = 15.0  # graph cost of starting a word: keeps one word per stretch of speech


def _kaldi_vector(values: Sequence[float]) -> str:
    return "[ " + " ".join(f"{v:.7g}" for v in values) + " ]"


def _tiny_final_mdl(num_phones: int, seed: bytes) -> str:
    """Kaldi text-format ``final.mdl``: a TransitionModel and an nnet3 AmNnetSimple.

    Phone 1 is silence, phone 1+i is word i. Every phone has one emitting HMM state (pdf = phone-1)
    with a self-loop, so a phone lasts one or more (subsampled) frames.
    """
    p_loop = _TINY_SELF_LOOP_PROB
    topology = (
        "<Topology>\n<TopologyEntry>\n<ForPhones>\n"
        + " ".join(str(p) for p in range(1, num_phones + 1))
        + "\n</ForPhones>\n"
        f"<State> 0 <PdfClass> 0 <Transition> 0 {p_loop} <Transition> 1 {1 - p_loop} </State>\n"
        "<State> 1 </State>\n</TopologyEntry>\n</Topology>\n"
    )
    triples = "".join(f"{p} 0 {p - 1}\n" for p in range(1, num_phones + 1))
    # Transition-ids: phone p has 2p-1 (self-loop, listed first) and 2p (to the final state).
    log_probs = [0.0] + [math.log(p_loop), math.log(1 - p_loop)] * num_phones
    transition_model = (
        f"<TransitionModel>\n{topology}<Triples> {num_phones}\n{triples}</Triples>\n"
        f"<LogProbs>\n {_kaldi_vector(log_probs)}\n</LogProbs>\n</TransitionModel>\n"
    )

    rng = random.Random(seed)
    rows, bias = [], []
    for pdf in range(num_phones):
        sign = -1.0 if pdf == 0 else 1.0
        rest = [0.0] * (_TINY_NUM_CEPS - 1)
        if pdf:
            rest = [rng.uniform(-_TINY_RANDOM_SCALE, _TINY_RANDOM_SCALE) for _ in rest]
        rows.append([sign * _TINY_ENERGY_SCALE, *rest])
        bias.append(-sign * _TINY_ENERGY_SCALE * _TINY_ENERGY_THRESHOLD)
    matrix = "[\n" + "\n".join("  " + " ".join(f"{v:.7g}" for v in r) for r in rows) + " ]"
    # Kaldi's text reader is picky about whitespace: "<Nnet3> " must be followed by a newline and
    # the config section ends at the first empty line.
    nnet = (
        "<Nnet3> \n"
        f"input-node name=input dim={_TINY_NUM_CEPS}\n"
        "component-node name=affine component=affine input=input\n"
        "component-node name=logsoftmax component=logsoftmax input=affine\n"
        "output-node name=output input=logsoftmax objective=linear\n"
        "\n"
        "<NumComponents> 2 \n"
        "<ComponentName> affine <AffineComponent> <LearningRate> 0 "
        f"<LinearParams> {matrix}\n<BiasParams> {_kaldi_vector(bias)}\n"
        "<IsGradient> F </AffineComponent>\n"
        f"<ComponentName> logsoftmax <LogSoftmaxComponent> <Dim> {num_phones} "
        "<ValueAvg> [ ] <DerivAvg> [ ] <Count> 0 </LogSoftmaxComponent>\n"
        "</Nnet3> \n"
        "<LeftContext> 0 <RightContext> 0 <Priors> [ ]\n"
    )
    return transition_model + nnet


def _tiny_hclg_text(num_phones: int) -> str:
    """OpenFst text format of a word-loop HCLG: input transition-ids, output word ids.

    Kaldi graphs are built with "reordered" HMMs (forward transition first, then self-loops) and
    Vosk's word aligner assumes that order, so each phone is ``forward self-loop*``. State 0 is the
    start and only final state; state p ends phone p and returns to 0 by an epsilon arc.
    """
    loop_cost = -math.log(_TINY_SELF_LOOP_PROB)
    forward_cost = -math.log(1 - _TINY_SELF_LOOP_PROB)
    lines = []
    for phone in range(1, num_phones + 1):
        word_id = phone - 1  # silence (phone 1) outputs epsilon
        entry_cost = forward_cost + (_TINY_WORD_PENALTY if word_id else 0.0)
        self_loop, forward = 2 * phone - 1, 2 * phone
        lines += [
            f"0 {phone} {forward} {word_id} {entry_cost:.6f}",
            f"{phone} {phone} {self_loop} 0 {loop_cost:.6f}",
            f"{phone} 0 0 0",
        ]
    lines.append("0 0")
    return "\n".join(lines) + "\n"


def _tiny_files(words: Sequence[str]) -> dict[str, str]:
    num_phones = len(words) + 1
    seed = hashlib.sha256("\n".join(words).encode()).digest()
    phones = ["<eps> 0", "SIL 1"] + [f"W{i} {i + 1}" for i in range(1, len(words) + 1)]
    return {
        "am/final.mdl": _tiny_final_mdl(num_phones, seed),
        "conf/mfcc.conf": (
            f"--sample-frequency={_TINY_SAMPLE_RATE}\n--use-energy=true\n"
            f"--num-ceps={_TINY_NUM_CEPS}\n--num-mel-bins=23\n"
            "--dither=0\n"  # deterministic features (Kaldi's default dither is random)
        ),
        "conf/model.conf": (
            "--min-active=200\n--max-active=3000\n--beam=13.0\n--lattice-beam=6.0\n"
            "--acoustic-scale=1.0\n"
            # Vosk converts frames to seconds as 0.03 s, i.e. it assumes subsampling by 3
            "--frame-subsampling-factor=3\n"
            "--endpoint.silence-phones=1\n"
            "--endpoint.rule2.min-trailing-silence=0.5\n"
            "--endpoint.rule3.min-trailing-silence=0.75\n"
            "--endpoint.rule4.min-trailing-silence=1.0\n"
        ),
        "graph/words.txt": "<eps> 0\n" + "".join(f"{w} {i}\n" for i, w in enumerate(words, 1)),
        "graph/phones.txt": "".join(f"{p}\n" for p in phones),
        # Silence is outside words; each word is one phone (begin and end at once).
        "graph/phones/word_boundary.int": "1 nonword\n"
        + "".join(f"{p} singleton\n" for p in range(2, num_phones + 1)),
        "README.txt": (
            "Tiny Vosk model made by chara (tests/tiny_vosk.py) for tests.\n"
            "Random-ish one-layer network: it recognises garbage words, timed on loud stretches.\n"
        ),
    }


def make_tiny_vosk_model(folder: Path, words: list[str]) -> Path:
    """Build (or reuse) a tiny but complete Vosk model for ``words`` in ``folder``; return it.

    Made of: ``am/final.mdl`` (Kaldi text format: HMM transition model, one state per phone, one
    phone per word plus silence; an nnet3 net with one affine layer + log-softmax on 13 MFCCs,
    energy-gated, see the constants above), ``conf/mfcc.conf``, ``conf/model.conf``,
    ``graph/HCLG.fst`` (a word loop compiled with OpenFst's ``fstcompile``), ``graph/words.txt``
    and ``graph/phones/word_boundary.int`` (so Vosk word-aligns lattices as with real models).
    No i-vector extractor (optional in Vosk). Vosk loads it and decodes for real; the words it
    outputs are arbitrary, their timings follow the speech.

    Cache-friendly: if ``folder`` already holds a model built for the same words, it is returned
    as is (a stamp file records them). A stale tiny model is replaced; a non-empty folder that is
    not a tiny model raises ``FileExistsError``. Raises ``ValueError`` for an empty word list,
    duplicates, or words with whitespace or starting with ``<`` or ``#`` (reserved symbols), and
    ``MissingToolError`` naming the Debian package if ``fstcompile`` is missing. Takes about 20 ms.
    """
    words = list(words)
    if not words:
        raise ValueError("make_tiny_vosk_model needs at least one word")
    for w in words:
        if not isinstance(w, str) or not w or re.search(r"\s", w) or w[0] in "<#":
            raise ValueError(
                f"bad word {w!r}: words must be non-empty, without whitespace and not start "
                "with '<' or '#' (reserved symbols in Kaldi graphs)"
            )
    if len(set(words)) != len(words):
        raise ValueError("make_tiny_vosk_model: duplicate words")
    fstcompile = shutil.which("fstcompile")
    if fstcompile is None:
        raise MissingToolError(
            "fstcompile (OpenFst) is not installed: install the Debian package 'libfst-tools' "
            "(apt-get install libfst-tools)"
        )

    folder = Path(folder)
    stamp = folder / _TINY_STAMP
    stamp_value = {"format": _TINY_FORMAT, "words": words}
    if stamp.is_file():
        if _stamp(stamp) == stamp_value and (folder / "graph/HCLG.fst").is_file():
            return folder
    elif folder.exists() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} is not empty and holds no tiny Vosk model; not touching it"
        )

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex}")
    try:
        for rel, text in _tiny_files(words).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        subprocess.run(
            [fstcompile, "-", str(tmp / "graph" / "HCLG.fst")],
            input=_tiny_hclg_text(len(words) + 1).encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        (tmp / _TINY_STAMP).write_text(json.dumps(stamp_value))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"fstcompile failed: {e.stderr.decode(errors='replace')}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _stamp(path: Path) -> object:
    """The JSON in a stamp file, or None if it is unreadable (then: rebuild)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
