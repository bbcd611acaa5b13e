"""The upload, and :func:`publish`: build and check the Hub folder, then upload it.

:func:`upload_hub_folder` calls ``create_repo(repo_id, exist_ok=True, private=…)`` and
``upload_folder`` on a client (default ``HfApi``; any object with those two methods will do). The
token comes from huggingface_hub's usual places (``HF_TOKEN``, the stored login) and is never
logged. ``publish(dry_run=True)`` stops before the upload.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from speechdistill import __version__
from speechdistill.publish.card import CardOptions
from speechdistill.publish.folder import build_hub_folder
from speechdistill.utils import OWNER_FILE, PathLike

log = logging.getLogger(__name__)

__all__ = ["HubClient", "PublishResult", "publish", "resolve_token", "upload_hub_folder"]

_NO_TOKEN = (
    "no Hugging Face token: set HF_TOKEN or log in with `hf auth login` "
    "(or build the folder only, with --dry-run)"
)


class HubClient(Protocol):
    """What :func:`upload_hub_folder` needs from a client (``huggingface_hub.HfApi`` has both)."""

    def create_repo(self, repo_id: str, *, exist_ok: bool, private: bool | None) -> Any: ...

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str,
        commit_message: str | None,
        ignore_patterns: list[str] | None,
    ) -> Any: ...


@dataclass
class PublishResult:
    """What :func:`publish` did."""

    folder: Path
    files: list[str]
    eval_results: list[tuple[str, str, float]]  # (test set, split, WER %) in model-index
    repo_id: str | None = None
    uploaded: bool = False
    url: str | None = None

    def summary(self) -> str:
        """Lines for the terminal: the folder, the model-index WERs, what was uploaded."""
        wers = ", ".join(f"{s} {v:.2f}" for s, _, v in self.eval_results) or "none"
        lines = [
            f"hub folder: {self.folder} ({len(self.files)} files)",
            f"WER % (model-index): {wers}",
        ]
        if self.uploaded:
            lines.append(f"uploaded to {self.repo_id}: {self.url or ''}".rstrip(": "))
        else:
            lines.append("dry run: nothing uploaded")
        return "\n".join(lines)


def resolve_token() -> str | None:
    """The Hub token from huggingface_hub's usual places (HF_TOKEN, the stored login)."""
    from huggingface_hub import get_token

    return get_token()


def upload_hub_folder(
    folder: PathLike,
    repo_id: str,
    *,
    private: bool = False,
    client: HubClient | None = None,
    commit_message: str | None = None,
) -> str | None:
    """Create ``repo_id`` if needed and upload ``folder``; return the commit URL when known.

    A token is required (never logged); ``client`` defaults to ``HfApi`` with that token.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"--repo-id {repo_id!r}: {e}") from None
    token = resolve_token()
    if not token:
        raise RuntimeError(_NO_TOKEN)
    if client is None:
        if constants.HF_HUB_OFFLINE:
            raise RuntimeError("HF_HUB_OFFLINE is set: cannot upload (unset it, or use --dry-run)")
        from huggingface_hub import HfApi

        client = HfApi(token=token)
    message = commit_message or f"Upload speechdistill student (speechdistill {__version__})"
    log.info("creating %s (if needed) and uploading %s", repo_id, folder)
    client.create_repo(repo_id, exist_ok=True, private=True if private else None)
    info = client.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=message,
        ignore_patterns=[OWNER_FILE],  # the local ownership marker is not part of the model
    )
    url = getattr(info, "commit_url", None) or (info if isinstance(info, str) else None)
    log.info("uploaded %s to %s", folder, repo_id)
    return str(url) if url else None


def publish(
    model_dir: PathLike,
    *,
    results: Sequence[PathLike] = (),
    out_dir: PathLike | None = None,
    repo_id: str | None = None,
    dry_run: bool = False,
    private: bool = False,
    client: HubClient | None = None,
    commit_message: str | None = None,
    teacher_dir: PathLike | None = None,
    teacher_results: Sequence[PathLike] | None = None,
    speed: Sequence[PathLike] | None = None,
    results_md: PathLike | None = None,
    card: CardOptions | None = None,
    ct2: bool = False,
    ct2_quantization: str | None = None,
) -> PublishResult:
    """Build and check the Hub folder, then (unless ``dry_run``) upload it to ``repo_id``."""
    if not dry_run:
        if not repo_id:
            raise ValueError("a repository id (--repo-id) is needed to upload (or use --dry-run)")
        if not resolve_token():  # fail before the build, not after it
            raise RuntimeError(_NO_TOKEN)
    opts = card or CardOptions()
    if repo_id and not opts.repo_id:
        opts = dataclasses.replace(opts, repo_id=repo_id)
    folder, rows = build_hub_folder(
        model_dir,
        out_dir,
        results=results,
        teacher_dir=teacher_dir,
        teacher_results=teacher_results,
        speed=speed,
        results_md=results_md,
        card=opts,
        ct2=ct2,
        ct2_quantization=ct2_quantization,
    )
    files = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name != OWNER_FILE
    )
    result = PublishResult(folder=folder, files=files, eval_results=rows, repo_id=repo_id)
    if dry_run:
        log.info("dry run: %s checked, nothing uploaded", folder)
        return result
    assert repo_id is not None
    result.url = upload_hub_folder(
        folder, repo_id, private=private, client=client, commit_message=commit_message
    )
    result.uploaded = True
    return result
