"""Where images and text go, per kind of logger. Used by ``core/sinks.py`` only.

Each destination takes encoded PNG bytes and Markdown text:

* TensorBoard: image and text summaries in the run's event file, under the logger's
  ``prefix`` as Lightning puts it before the scalars (``"ab-"`` for ``prefix="ab"``);
* Weights & Biases: ``WandbLogger.log_image`` / ``log_text`` (a one-row table per entry);
* MLflow: artifacts of the run, ``cnnviz/<tag>/step_<step>.png`` / ``.md``
  (``cnnviz/layers/...`` for the ``cnnviz/layers`` text);
* a folder: ``<tag>/step_<step>.png`` and ``<tag with / as _>.md`` (entries appended)
  under a per-run folder (``run_folder``).

Metric names go to MLflow through ``mlflow_name``: MLflow accepts letters, digits and
``_ - . / space`` only (Lightning drops any other character with a warning per name,
so ``relu#0`` and ``relu#1`` would both become ``relu0`` / ``relu1``); every other
character becomes ``_``.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from typing_extensions import override

__all__ = [
    "Destination",
    "Folder",
    "MLflow",
    "TensorBoard",
    "Wandb",
    "add_summary",
    "latest_embedding_first",
    "mlflow_name",
    "run_folder",
    "shown_path",
    "tag_prefix",
]

_NOT_MLFLOW = re.compile(r"[^a-zA-Z0-9_/. -]")


def shown_path(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (shorter to read)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def mlflow_name(name: str) -> str:
    """``name`` as MLflow accepts it: each character MLflow rejects becomes ``_``.

    Example::

        >>> mlflow_name("activations/relu#0/mean"), mlflow_name("a:b")
        ('activations/relu_0/mean', 'a_b')
    """
    return _NOT_MLFLOW.sub("_", name)


def add_summary(writer: Any, summary: Summary, step: int) -> None:
    """Queue a built summary the way ``SummaryWriter.add_*`` do (on its file writer)."""
    writer._get_file_writer().add_summary(summary, step)


_STEP_NAME = re.compile(r"^(?P<tag>.*?)(:\d+| \((latest, )?step \d+\))$")


def latest_embedding_first(config: str) -> str:
    r"""A projector config whose newest embedding of each tag is the one the Projector opens.

    The Projector opens on the first tensor in name order, and ``add_embedding`` names
    them ``<tag>:<step>``: it would open on the earliest step. Here the newest becomes
    ``<tag> (latest, step N)`` and the others ``<tag> (step N)`` (steps from each
    tensor's folder, ``<step>/<tag>/tensors.tsv``).

    Example::

        >>> text = (
        ...     'embeddings { tensor_name: "emb:00012" tensor_path: "00012/emb/tensors.tsv" }\n'
        ...     'embeddings { tensor_name: "emb:00375" tensor_path: "00375/emb/tensors.tsv" }'
        ... )
        >>> import re
        >>> re.findall(r'tensor_name: "([^"]+)"', latest_embedding_first(text))
        ['emb (step 12)', 'emb (latest, step 375)']
    """
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    parsed = text_format.Parse(config, ProjectorConfig())
    found = []
    for info in parsed.embeddings:
        match, folder = _STEP_NAME.match(info.tensor_name), info.tensor_path.split("/")[0]
        if match and folder.isdigit():
            found.append((info, match["tag"], int(folder)))
    newest = {}
    for _, tag, step in found:
        newest[tag] = max(step, newest.get(tag, step))
    for info, tag, step in found:
        latest = "latest, " if step == newest[tag] else ""
        info.tensor_name = f"{tag} ({latest}step {step})"
    return text_format.MessageToString(parsed)


def run_folder(base: str | Path) -> Path:
    """A new folder ``<base>/cnnviz`` (or ``cnnviz_1``, ``cnnviz_2``, ... if taken), made now.

    Example::

        >>> import tempfile
        >>> base = tempfile.mkdtemp()
        >>> run_folder(base).name, run_folder(base).name
        ('cnnviz', 'cnnviz_1')
    """
    for n in range(10_000):
        path = Path(base) / ("cnnviz" if n == 0 else f"cnnviz_{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free cnnviz folder under {base}")


NAME_BYTES = 200  # a file or folder name's bytes at most (filesystems allow 255)


def _short(name: str) -> str:
    """``name`` as a file or folder name: a long one keeps its ends and a hash of the whole.

    Module names of deep wrappers passed 255 bytes, and writing their PNGs raised "File
    name too long".

    Example::

        >>> long = "net." + "wrapper." * 60 + "relu"
        >>> _short("relu1"), len(_short(long)), _short(long)[-13:]
        ('relu1', 192, '.wrapper.relu')
    """
    if len(name.encode()) <= NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    head, tail = name[:120], name[-60:]
    while len(f"{head}~{digest}~{tail}".encode()) > NAME_BYTES:  # many-byte characters
        head, tail = head[:-1], tail[1:]
    return f"{head}~{digest}~{tail}"


def _path(tag: str) -> str:
    """``tag``'s parts, each a file-system name (``_short``), joined by ``/``."""
    return "/".join(_short(part) for part in tag.split("/"))


def _artifact_folder(tag: str) -> str:
    """``cnnviz/<tag>``: the run's artifacts hold other things too (checkpoints)."""
    return _path(tag if tag.startswith("cnnviz/") else f"cnnviz/{tag}")


def _pil(png: bytes) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    image.load()
    return image


class Destination:
    """Where images and text go; ``name`` says which, in messages.

    ``thread_safe``: whether ``image`` may run on the sink's thread while the training
    thread logs to the same run (else the training thread writes it).
    """

    name = "destination"
    thread_safe = True

    @property
    def where(self) -> str:
        """Where a user finds what was written here, in words."""
        return self.name

    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        """Write one PNG image of ``size`` (height, width) under ``tag`` at ``step``."""
        raise NotImplementedError

    def text(self, tag: str, text: str, step: int) -> None:
        """Write one Markdown entry under ``tag`` at ``step``."""
        raise NotImplementedError


def tag_prefix(logger: Any) -> str:
    """What Lightning puts before a logger's metric names (its ``prefix`` and join character).

    Example::

        >>> from types import SimpleNamespace
        >>> tag_prefix(SimpleNamespace(_prefix="run_a", LOGGER_JOIN_CHAR="-"))
        'run_a-'
        >>> tag_prefix(SimpleNamespace(_prefix=""))
        ''
    """
    prefix = getattr(logger, "_prefix", "") or ""
    return f"{prefix}{getattr(logger, 'LOGGER_JOIN_CHAR', '-')}" if prefix else ""


class TensorBoard(Destination):
    """A TensorBoard ``SummaryWriter``; tags get ``prefix`` (``tag_prefix`` of its logger)."""

    name = "TensorBoard"

    def __init__(self, writer: Any, prefix: str = "") -> None:
        self.writer = writer
        self.prefix = prefix

    @override
    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        height, width = size
        encoded = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
        value = Summary.Value(tag=self.prefix + tag, image=encoded)
        add_summary(self.writer, Summary(value=[value]), step)

    @override
    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(self.prefix + tag, text, step)


class Wandb(Destination):
    """A ``WandbLogger`` (either Lightning package)."""

    name = "W&B"
    thread_safe = False  # `wandb.Run.log` takes no lock
    where = "the W&B run (its media panels)"

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @override
    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        self.logger.log_image(key=tag, images=[_pil(png)], step=step)

    @override
    def text(self, tag: str, text: str, step: int) -> None:
        self.logger.log_text(key=tag, columns=["step", "text"], data=[[step, text]], step=step)


class MLflow(Destination):
    """An ``MLFlowLogger`` (either Lightning package): artifacts of its run."""

    name = "MLflow"
    thread_safe = False  # a client of a tracking server: on one thread, like Lightning's
    where = "the MLflow run's artifacts"

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @override
    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        file = f"{_artifact_folder(tag)}/step_{step:08d}.png"
        self.logger.experiment.log_image(self.logger.run_id, _pil(png), artifact_file=file)

    @override
    def text(self, tag: str, text: str, step: int) -> None:
        file = f"{_artifact_folder(tag)}/step_{step:08d}.md"
        self.logger.experiment.log_text(self.logger.run_id, text, artifact_file=file)


class Folder(Destination):
    """PNG and Markdown files under one run's folder."""

    name = "folder"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:  # type: ignore[override]
        """The folder, named."""
        return f"PNG and Markdown files in {shown_path(self.path)}"

    @override
    def image(self, tag: str, png: bytes, size: tuple[int, int], step: int) -> None:
        path = self.path / _path(tag) / f"step_{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)

    @override
    def text(self, tag: str, text: str, step: int) -> None:
        path = self.path / f"{_short(tag.replace('/', '_'))}.md"
        with path.open("a", encoding="utf-8") as file:
            file.write(f"## step {step}\n\n{text}\n\n")
