"""Start providers: what maps texts to fitting starts, filled in by a package above proto.

A provider is called as provider(spec, lm, token_lists) and returns (e [R, d] on the CPU, m
[d], info), where info holds at least `path`, `step` and `arrangement` (Arrangement.to_dict)
of what made the starts; it raises ValueError with one line when `spec` is unusable. Its
attribute `record(spec)` names the precision the artefact was made in (start_record). The
encoder package registers one, `encoder`, in the entry-point group below (pyproject.toml), so
`proto.fit --init-from SPEC` and `data_gen.build init_from=SPEC` start fitting at an encoder's
e without proto or data_gen importing the encoder.
"""
from __future__ import annotations

from importlib.metadata import entry_points

import torch

GROUP = "protospace.start_providers"


def _provider(provider: str):
    found = [ep for ep in entry_points(group=GROUP) if ep.name == provider]
    if not found:
        raise ValueError(f"no start provider {provider!r} is installed (entry points "
                         f"{GROUP}); install the project: pip install -e .")
    return found[0].load()


def text_starts(spec: str, lm, token_lists: list[list[int]], provider: str = "encoder"
                ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(e [R, d], m [d], info) from the registered provider for `spec`."""
    return _provider(provider)(spec, lm, token_lists)


def start_record(spec: str, provider: str = "encoder") -> dict:
    """{"record": precision, "what": name} of the artefact behind `spec` (the provider's
    `record` attribute), for proto.models.load_model: the decoder is loaded in the precision
    the starts were made in, so every path that reads one artefact gets the same e's."""
    record = getattr(_provider(provider), "record", None)
    return record(spec) if record else {}
