"""Write an fp16 copy of the packaged all-MiniLM-L6-v2 (45 MB instead of 91 MB) with its tokenizer.

A GPU machine with a 64 MiB working-tree limit carries this copy; point `dit.text_encoder_path` and `text.path` at it.
Both loaders (sara.models.dit.build_text_conditioner, sara.models.encoders.build_text_model) read it back as fp32.

    python scripts/minilm_fp16.py .minilm-fp16
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_fp16_copy(out: str | Path) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sara.models.dit import minilm_dir

    src, out = minilm_dir(), Path(out)
    AutoModel.from_pretrained(src, dtype=torch.float32).half().save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/minilm_fp16.py OUT_DIR")
    print(write_fp16_copy(sys.argv[1]))
