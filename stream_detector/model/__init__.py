"""The spacetime model: network (pure nn.Module), TorchScript export with metadata, and loading."""

from pathlib import Path

# The committed demo model, used when a camera names none (source checkout or editable install).
# Here rather than in runtime.py so the command line can name it without importing torch.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "vtest"
