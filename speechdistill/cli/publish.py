"""``speechdistill publish``: Hub folder, model card and upload of a trained student (stage 10).

speechdistill publish --model exp/student [--teacher exp/teacher] [--results FILE …]
                      [--repo-id USER/NAME | --dry-run] [--out DIR] [--ct2 [--ct2-quantization Q]]
                      [--base-model ID] [--language L] [--license L] [--dataset-id ID]
                      [--dataset-name NAME] [--split SET=SPLIT …] [--selection-set dev] …
"""

from __future__ import annotations

import argparse

from speechdistill.cli.options import model_dir, out_dir


def _split(text: str) -> tuple[str, str]:
    name, sep, split = text.partition("=")
    if not sep or not name.strip() or not split.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected SET=SPLIT, e.g. dev=validation")
    return name.strip(), split.strip()


def register(sub: argparse._SubParsersAction) -> None:
    from speechdistill.whisper.ct2.export import QUANTIZATIONS

    p = sub.add_parser(
        "publish",
        help="Hub folder + model card (+ CTranslate2 export) of a student; upload unless dry run",
        description="Build a Hub-ready folder from a trained student (safetensors weights, "
        "configs, processor, training settings, RESULTS.md, a model card whose model-index holds "
        "the WER on each test set), load it back to check it, then create the Hub repository if "
        "needed and upload the folder. The token comes from HF_TOKEN or the stored login "
        "(`hf auth login`) and is never printed.",
    )
    p.add_argument(
        "--model", required=True, type=model_dir, help="trained student dir (e.g. exp/student)"
    )
    p.add_argument(
        "--teacher", default=None, type=model_dir, help="teacher dir (e.g. exp/teacher): size, id"
    )
    p.add_argument(
        "--results",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="the student's results.json files or score dirs (default: "
        "MODEL/decode_*/score_wer/results.json)",
    )
    p.add_argument(
        "--teacher-results",
        nargs="+",
        action="extend",
        default=None,
        metavar="FILE",
        help="the teacher's results.json files (default: TEACHER/decode_*/score_wer/results.json)",
    )
    p.add_argument(
        "--speed",
        nargs="+",
        action="extend",
        default=None,
        metavar="FILE",
        help="speed.json files (default: speed.json in TEACHER and MODEL, when present)",
    )
    p.add_argument(
        "--results-md", default=None, help="RESULTS.md to copy (default: written from the results)"
    )
    p.add_argument(
        "--out",
        type=out_dir,
        default=None,
        help="the hub folder (default: MODEL/hub); an earlier one is replaced, a non-empty "
        "folder publish did not write is refused",
    )
    p.add_argument("--repo-id", default=None, help="Hub repository, USER/NAME (needed to upload)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--dry-run", action="store_true", help="build and check the folder, do not upload"
    )
    p.add_argument("--commit-message", default=None, help="commit message of the upload")
    card = p.add_argument_group("model card")
    card.add_argument("--model-name", default=None, help="title (default: the repository name)")
    card.add_argument(
        "--base-model",
        default=None,
        help="the teacher's Hub id (default: from TEACHER/teacher.json when it records one)",
    )
    card.add_argument(
        "--language",
        nargs="+",
        default=None,
        help="language code(s) (default: en for English-only models, else the training language)",
    )
    card.add_argument(
        "--license",
        default=None,
        help="license id, e.g. apache-2.0 (default: apache-2.0 for openai/whisper-* teachers)",
    )
    card.add_argument(
        "--dataset-id", default=None, help="Hub dataset of the test sets (default: the set names)"
    )
    card.add_argument("--dataset-name", default=None, help="its display name")
    card.add_argument("--dataset-config", default=None, help="its configuration, e.g. pt")
    card.add_argument(
        "--split",
        type=_split,
        action="append",
        default=[],
        metavar="SET=SPLIT",
        help="the dataset split of a test set, e.g. dev=validation (default: the set name; "
        "repeatable)",
    )
    card.add_argument(
        "--selection-set",
        default=None,
        metavar="SET",
        help="the set that chose the checkpoint (e.g. dev): shown, marked, kept out of model-index",
    )
    ct2 = p.add_argument_group("CTranslate2 export")
    ct2.add_argument("--ct2", action="store_true", help="add a CTranslate2 export in ct2/")
    ct2.add_argument(
        "--ct2-quantization",
        default=None,
        choices=QUANTIZATIONS,
        help="its weight type (default: as stored)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from speechdistill.publish import CardOptions, publish

    if not args.dry_run and not args.repo_id:
        raise ValueError("--repo-id is needed to upload (or use --dry-run)")
    language = args.language
    if language and len(language) == 1:
        language = language[0]
    card = CardOptions(
        repo_id=args.repo_id,
        model_name=args.model_name,
        base_model=args.base_model,
        language=language,
        license=args.license,
        dataset_id=args.dataset_id,
        dataset_name=args.dataset_name,
        dataset_config=args.dataset_config,
        splits=dict(args.split),
        selection_set=args.selection_set,
    )
    result = publish(
        args.model,
        results=args.results,
        out_dir=args.out,
        repo_id=args.repo_id,
        dry_run=args.dry_run,
        private=args.private,
        commit_message=args.commit_message,
        teacher_dir=args.teacher,
        teacher_results=args.teacher_results,
        speed=args.speed,
        results_md=args.results_md,
        card=card,
        ct2=args.ct2,
        ct2_quantization=args.ct2_quantization,
    )
    print(result.summary())
    return 0
