"""Stage 10, ``publish``: a trained student as a Hugging Face Hub repository.

- :mod:`~speechdistill.publish.files`: what is read from the model dir (safetensors weights only,
  parameter counts, training settings) and the score files;
- :mod:`~speechdistill.publish.card`: the model card, its metadata (model-index: the test-set
  WERs) and its text, the template ``card_template.md``;
- :mod:`~speechdistill.publish.folder`: build the Hub-ready folder and load it back to check it;
- :mod:`~speechdistill.publish.upload`: ``create_repo`` + ``upload_folder`` through an injectable
  client, the token never logged; :func:`publish` builds, checks and uploads.
"""

from speechdistill.publish.card import REQUIRED_TAGS, CardOptions, make_model_card
from speechdistill.publish.folder import build_hub_folder, verify_hub_folder
from speechdistill.publish.upload import (
    HubClient,
    PublishResult,
    publish,
    resolve_token,
    upload_hub_folder,
)

__all__ = [
    "REQUIRED_TAGS",
    "CardOptions",
    "HubClient",
    "PublishResult",
    "build_hub_folder",
    "make_model_card",
    "publish",
    "resolve_token",
    "upload_hub_folder",
    "verify_hub_folder",
]
