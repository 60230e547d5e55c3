"""How many of pydicom's own DICOM test files the client turns into model input.

Usage::

    .venv/bin/python client/benchmarks/dicom_corpus.py            # counts and every refusal
    .venv/bin/python client/benchmarks/dicom_corpus.py --json out.json

The corpus is every ``*.dcm`` file in the ``test_files`` folder that the
installed pydicom ships (78 files with pydicom 3.0): CT, MR, RT dose and plan,
structured reports, waveforms, every transfer syntax pydicom tests with, files
without the Part 10 preamble, truncated and malformed ones. Each file goes
through :func:`medserve_client.preprocessing.to_model_input`, as the client
does before it sends a request, and is counted as *classified* (a uint8
``(224, 224, 3)`` tensor came back) or *refused* (``InvalidInputError``).
Anything else escaping the pipeline is a bug and is counted as *crashed*.

Refusals are grouped by message; a refusal that quotes a patient attribute of
the file (name, ID, birth date, accession number) is reported as a leak and
makes the script exit 1.

A measurement, not a test: it asserts nothing about the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

SIZE = (224, 224)
_PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")


def corpus() -> list[Path]:
    """Every ``*.dcm`` file directly in pydicom's ``test_files`` folder, sorted."""
    from pydicom.data import get_testdata_file

    anchor = get_testdata_file("CT_small.dcm", download=False)
    if anchor is None:
        raise SystemExit("pydicom's test files are not installed")
    return sorted(Path(anchor).parent.glob("*.dcm"))


def _patient_values(path: Path) -> list[str]:
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # A file pydicom cannot parse carries nothing we can check.
        return []
    values = (str(dataset.get(keyword) or "") for keyword in _PATIENT_KEYWORDS)
    return [value for value in values if len(value) >= 3]


def run() -> dict[str, Any]:
    """Run every corpus file through the pipeline; return counts and messages."""
    from medserve_client.preprocessing import InvalidInputError, to_model_input

    classified: list[str] = []
    refused: dict[str, str] = {}
    crashed: dict[str, str] = {}
    leaks: list[str] = []
    for path in corpus():
        try:
            tensor = to_model_input(path, SIZE)
        except InvalidInputError as exc:
            message = str(exc).replace(str(path), path.name)
            refused[path.name] = message
            if any(value in message for value in _patient_values(path)):
                leaks.append(path.name)
            continue
        except Exception as exc:  # Reported, not raised: this is what we measure.
            crashed[path.name] = f"{type(exc).__name__}: {exc}"
            continue
        if tensor.shape != (*SIZE, 3) or str(tensor.dtype) != "uint8":
            crashed[path.name] = f"wrong tensor {tensor.shape} {tensor.dtype}"
            continue
        classified.append(path.name)
    return {
        "files": len(classified) + len(refused) + len(crashed),
        "classified": len(classified),
        "refused": len(refused),
        "crashed": len(crashed),
        "patient_data_in_messages": leaks,
        "decoders": _decoders(),
        "classified_files": classified,
        "refusals": refused,
        "crashes": crashed,
    }


def _decoders() -> dict[str, str]:
    """Versions of pydicom and the optional pixel-data plugins installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    plugins = ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")
    for name in ("pydicom", *plugins):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the full result here")
    args = parser.parse_args(argv)
    result = run()
    print(", ".join(f"{name} {release}" for name, release in result["decoders"].items()))
    print(
        f"{result['files']} DICOM files: {result['classified']} classified, "
        f"{result['refused']} refused, {result['crashed']} crashed"
    )
    grouped = collections.defaultdict(list)
    for name, message in result["refusals"].items():
        grouped[message.removeprefix(f"{name}: ")].append(name)
    for message, names in sorted(grouped.items(), key=lambda item: -len(item[1])):
        print(f"  refused {len(names):2d}: {message}\n      {', '.join(sorted(names))}")
    for name, message in result["crashes"].items():
        print(f"  CRASHED {name}: {message}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["patient_data_in_messages"]:
        print(f"patient data in messages: {result['patient_data_in_messages']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
