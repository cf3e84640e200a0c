"""Configuration (SPEC section 3): ``nb2prod.toml``, ``--config PATH`` or ``[tool.nb2prod]``.

Every key is optional; an unknown key is an error naming the key and the file. Validation is
pydantic with ``extra="forbid"``, so the schema below is the documentation of what is accepted.
"""

from __future__ import annotations

import operator
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..errors import ConfigError
from ..runtime.limits import default_max_body_bytes
from ..runtime.schema import Owners, RateLimit, ServiceLevels

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
_HOST = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_PACKAGE = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_INDEX_URL = re.compile(r"^(https?://[^\s/]+|file://)[^\s]*$")
_GATE = re.compile(r"^\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
_OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Gate:
    """A quality gate such as ``accuracy >= 0.9``."""

    metric: str
    op: str
    threshold: float

    def passes(self, value: float) -> bool:
        return _OPERATORS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


class CircuitBreaker(_Strict):
    failures: int = Field(5, ge=1)
    reset_s: float = Field(30.0, gt=0)


class FallbackConfig(_Strict):
    timeout_ms: int | None = Field(None, gt=0)
    min_confidence: float | None = Field(None, ge=0, le=1)
    circuit_breaker: CircuitBreaker = CircuitBreaker()


class ContractConfig(_Strict):
    """Contract inference, used only when the notebook has no `contract` cell."""

    training_data: str | None = None  # a DataFrame variable the train cells leave in the kernel
    margin: float = Field(0.1, ge=0)  # observed range widened by this fraction on each side
    max_categories: int = Field(10, ge=1)  # strings with at most this many values become enums


class EvaluationConfig(_Strict):
    """The held-out data the notebook leaves in the kernel, and how the report uses it."""

    # the held-out rows: a DataFrame (or list of dicts) of Input fields, scored the way the service
    # answers (preprocess -> predict -> postprocess), or the features the predict cell takes
    eval_x: str = "eval_X"
    eval_y: str = "eval_y"  # their true targets (one column, or one per output)
    # compared with eval_y when eval_x holds Input rows; default: Output's first field
    output_field: str | None = None
    # the Output field with the probability behind output_field's labels (ROC AUC, log loss);
    # default: the one number field in [0, 1] the service's labels follow a threshold on
    probability_field: str | None = None
    task: Literal["auto", "classification", "regression"] = (
        "auto"  # auto: from eval_y and the model
    )
    slices: list[str] = Field(default_factory=list)  # columns of eval_X to break metrics down by
    # how much worse than the previous release each metric may be (absolute)
    max_regression: dict[str, float] = Field(default_factory=dict)


class CardConfig(_Strict):
    """Model card text that is not in the notebook."""

    intended_use: str | None = None
    # default: the first paragraph of prose in the notebook's markdown (headings, images and HTML
    # left out), cut at a sentence near 400 characters
    description: str | None = None
    limitations: str | None = None  # default: a markdown cell headed "Limitations"


class ServiceConfig(_Strict):
    auth: Literal["token", "none"] = "token"
    workers: int = Field(1, ge=1)
    # adaptive batching of /v1/predict: requests that arrive while the model is busy run together
    batching: bool = True
    max_batch_size: int = Field(64, ge=1)  # most requests one model call may take
    # batching is switched on only if every batch answers as its items alone, numbers within this
    batching_tolerance: float = Field(0.0, ge=0)
    max_batch_rows: int = Field(1000, ge=1)  # most inputs /v1/predict_batch accepts
    # largest request body in bytes (413 above it); default: max_batch_rows x 4 KiB + 64 KiB
    max_body_bytes: int | None = Field(None, ge=1024)
    # JSON types of request bodies: "strict" (a string is not a number, nor is true) or "lax"
    # (pydantic's coercion: "5.1" -> 5.1, "true" -> true)
    input_types: Literal["strict", "lax"] = "strict"
    log_bodies: bool = False  # request and response bodies in the logs (sensitive fields redacted)
    # requests per client: {requests_per_s = 10, burst = 20, key = "address"}; past it a 429
    # with Retry-After (docs/service.md "Rate limit"); None: no limit in the service
    rate_limit: RateLimit | None = None

    @model_validator(mode="after")
    def _check_rate_limit_key(self) -> ServiceConfig:
        if self.rate_limit is not None and self.rate_limit.key == "token" and self.auth == "none":
            raise ValueError(
                'rate_limit.key = "token" needs auth = "token": without auth any client can send '
                'a new token with every request; use key = "address" or "forwarded"'
            )
        return self

    @property
    def body_limit(self) -> int:
        """max_body_bytes, or its default for max_batch_rows."""
        return self.max_body_bytes or default_max_body_bytes(self.max_batch_rows)


class MonitoringConfig(_Strict):
    """Input drift: reference statistics captured at package time, compared while serving."""

    # a variable the notebook leaves: a DataFrame with Input's field names as columns, a list of
    # dicts, or a 2-D array whose columns preprocess shows to be Input's fields in order.
    # Default: [contract] training_data, else [evaluation] eval_x.
    reference: str | None = None
    bins: int = Field(10, ge=2, le=100)  # quantile bins per numeric field
    window: int = Field(1000, ge=100)  # the service compares the last `window` values per field


class ExecutionConfig(_Strict):
    """How the notebook runs in its kernel at package time."""

    # environment variables the kernel gets besides what any notebook needs (PATH, HOME, locale,
    # TMPDIR, Jupyter's and the numeric libraries' settings: pipeline/execute.py KERNEL_ENV);
    # nothing else of the packager's environment reaches the kernel
    env: list[str] = Field(default_factory=list)

    @field_validator("env")
    @classmethod
    def _check_env(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.startswith("NB2PROD_"):
                raise ValueError(
                    f"{name}: nb2prod's own settings and secrets never reach the kernel"
                )
        return names


class ArtifactsConfig(_Strict):
    """Fitted state: values service code reads from train, model or untagged cells."""

    # a DataFrame, Series or array with more rows than this looks like training data: an error
    max_rows: int = Field(1000, ge=1)
    # with more rows than this (and not more than max_rows) it may be training data: a warning
    # saying what the service reads from it and how to export only that
    warn_rows: int = Field(100, ge=1)
    allow: list[str] = Field(default_factory=list)  # names allowed to ship whatever their size


class LockIndex(_Strict):
    """An index some packages are resolved from instead of the default one (a CPU build of
    torch, say); every other package still comes from the default index."""

    url: str
    packages: tuple[str, ...] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _index_url(value)

    @field_validator("packages")
    @classmethod
    def _check_packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _PACKAGE.match(name):
                raise ValueError(f"{name!r} is not a package name")
        return tuple(_normal_package(name) for name in value)


_INDEX_FORMS = (
    'write a table of package = URL, { torch = "https://example.invalid/whl/cpu" }, or a list '
    'of { packages = ["torch"], url = "https://example.invalid/whl/cpu" }'
)


class LockConfig(_Strict):
    """How requirements.lock is resolved (docs/configuration.md [lock])."""

    # per-package indexes: `{ torch = "URL" }` or `[{ packages = ["torch", ...], url = "URL" }]`
    index: tuple[LockIndex, ...] = ()

    @field_validator("index", mode="before")
    @classmethod
    def _table_or_list(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # { package = url, ... }: one index per distinct URL
            by_url: dict[str, list[str]] = {}
            for package, url in value.items():
                if not isinstance(url, str):
                    raise ValueError(f"{package} = {url!r}: {_INDEX_FORMS}")
                try:
                    by_url.setdefault(_index_url(url), []).append(package)
                except ValueError as exc:
                    raise ValueError(f"{package} = {exc}") from None
            return [{"url": url, "packages": names} for url, names in by_url.items()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{value!r}: {_INDEX_FORMS}")
        return value

    @field_validator("index")
    @classmethod
    def _each_package_once(cls, value: tuple[LockIndex, ...]) -> tuple[LockIndex, ...]:
        seen: dict[str, str] = {}
        for index in value:
            for name in index.packages:
                if name in seen and seen[name] != index.url:
                    raise ValueError(
                        f"{name} is given two indexes ({seen[name]} and {index.url}); "
                        "a package is resolved from one"
                    )
                seen[name] = index.url
        return value

    @property
    def sources(self) -> dict[str, str]:
        """Package -> the index URL it is resolved from, sorted by package."""
        return dict(sorted((n, index.url) for index in self.index for n in index.packages))


def _index_url(value: str) -> str:
    if not _INDEX_URL.match(value):
        raise ValueError(
            f"{value!r} is not an index URL; write the http://, https:// or file:// URL of a "
            "simple (PEP 503) index"
        )
    return value.rstrip("/")


def _normal_package(name: str) -> str:
    """A package name as indexes compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class CanaryConfig(_Strict):
    """The canary variant in deploy/canary/ (the new version beside the stable one) and the
    Argo Rollouts canary in deploy/rollout/, analysed against the ``[slo]`` (docs/deploy.md)."""

    # pods of the new version; the Service spreads requests over all pods, so the canary gets
    # replicas / (replicas + stable replicas) of the traffic
    replicas: int = Field(1, ge=1)
    # Argo Rollouts: the canary's share of the pods at each step (percent, ascending); after
    # each, a pause of pause_s and an analysis of the [slo]; past the last, the full rollout
    weights: list[int] = Field(default_factory=lambda: [20, 50])
    pause_s: int = Field(300, ge=0)
    # the analysis: `analysis_count` measurements `analysis_interval_s` apart, each over the
    # last `analysis_window_s`; one that breaks an objective aborts and rolls back the canary
    analysis_window_s: int = Field(300, ge=10)
    analysis_interval_s: int = Field(60, ge=10)
    analysis_count: int = Field(3, ge=1)
    # the Prometheus that scrapes the service (the Prometheus Operator's Service by default)
    prometheus: str = "http://prometheus-operated.monitoring.svc:9090"

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, weights: list[int]) -> list[int]:
        if not weights or any(not 1 <= w <= 99 for w in weights) or weights != sorted(set(weights)):
            raise ValueError(
                "must be one or more percentages from 1 to 99, ascending, such as [20, 50]"
            )
        return weights

    @field_validator("prometheus")
    @classmethod
    def _check_prometheus(cls, url: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", url):
            raise ValueError(
                'must be an http(s) URL such as "http://prometheus.monitoring.svc:9090"'
            )
        return url


class NetworkConfig(_Strict):
    """deploy/kubernetes/networkpolicy.yaml: who may reach the service's port."""

    policy: bool = True  # write the NetworkPolicy
    # namespaces whose pods may call the service; none and no allow_pods: the release's own
    # namespace (the ingress controller's namespace is added when [deploy.ingress] is set)
    allow_namespaces: list[str] = Field(default_factory=list)
    # labels of the pods of the release's own namespace that may call the service
    allow_pods: dict[str, str] = Field(default_factory=dict)
    # the namespace of the Prometheus that scrapes /metrics (served on the service port)
    prometheus_namespace: str = "monitoring"

    @field_validator("allow_namespaces")
    @classmethod
    def _check_namespaces(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _DNS_LABEL.match(name):
                raise ValueError(f"{name!r} is not a Kubernetes namespace name")
        return names

    @field_validator("prometheus_namespace")
    @classmethod
    def _check_namespace(cls, name: str) -> str:
        if not _DNS_LABEL.match(name):
            raise ValueError(f"{name!r} is not a Kubernetes namespace name")
        return name

    @field_validator("allow_pods")
    @classmethod
    def _check_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise ValueError(f"{key} = {value!r} is not a Kubernetes label")
        return labels


class IngressConfig(_Strict):
    """deploy/kubernetes/ingress.yaml, written when ``host`` is set."""

    host: str | None = None  # the name clients call, e.g. "iris.example.com"
    tls_secret: str | None = None  # a kubernetes.io/tls Secret: HTTPS, and HTTP redirected
    class_name: str = "nginx"  # spec.ingressClassName; the annotations are ingress-nginx's
    controller_namespace: str = "ingress-nginx"  # allowed by the NetworkPolicy

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str | None) -> str | None:
        if host is not None and not _HOST.match(host):
            raise ValueError('must be a DNS name such as "iris.example.com"')
        return host

    @field_validator("tls_secret", "class_name", "controller_namespace")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(
                "must be a Kubernetes name: lowercase letters, digits and '-', starting and "
                "ending with a letter or digit, at most 63 characters"
            )
        return value


class DeployConfig(_Strict):
    """Kubernetes, Helm and KServe files in deploy/ (docs/deploy.md)."""

    namespace: str | None = None  # metadata.namespace of every object; None: kubectl's -n
    replicas: int = Field(2, ge=1)  # pods of the stable Deployment
    min_replicas: int | None = Field(None, ge=1)  # autoscaling floor; default: replicas
    max_replicas: int | None = Field(None, ge=1)  # autoscaling ceiling; default: 2 x min
    cpu_target: int = Field(70, ge=1, le=100)  # average CPU utilisation (%) the autoscaler keeps
    cpu: str = "500m"  # CPU request per pod (no CPU limit: a limit throttles, see deploy.md)
    memory_headroom: float = Field(1.5, ge=1.0)  # memory limit = measured memory x this
    token_secret: str | None = None  # Secret holding the bearer token; default <name>-token
    canary: CanaryConfig = CanaryConfig()
    network: NetworkConfig = NetworkConfig()
    ingress: IngressConfig = IngressConfig()

    @field_validator("namespace", "token_secret")
    @classmethod
    def _check_dns_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_LABEL.match(value):
            raise ValueError(
                "must be a Kubernetes name: lowercase letters, digits and '-', starting and "
                "ending with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("cpu")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        if not _CPU.match(value):
            raise ValueError('must be a Kubernetes CPU quantity such as "500m" or "2"')
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> DeployConfig:
        if self.autoscaling_min > self.autoscaling_max:
            raise ValueError(
                f"min_replicas ({self.autoscaling_min}) is above max_replicas "
                f"({self.autoscaling_max})"
            )
        return self

    @property
    def autoscaling_min(self) -> int:
        return self.min_replicas if self.min_replicas is not None else self.replicas

    @property
    def autoscaling_max(self) -> int:
        return self.max_replicas if self.max_replicas is not None else 2 * self.autoscaling_min


class Config(_Strict):
    """The validated configuration of one notebook."""

    name: str | None = None
    version: str = "0.1.0"
    owner: str | None = None  # one owner for everything: [owners] model when that is unset
    # [owners]: model, service, data, on_call (each a team or a person) and runbook_base_url;
    # they reach the model card, /v1/metadata and the alerts' `team` label and runbook links
    owners: Owners = Owners()
    gates: dict[str, str] = Field(default_factory=dict)
    fallback: FallbackConfig = FallbackConfig()
    service: ServiceConfig = ServiceConfig()
    contract: ContractConfig = ContractConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    card: CardConfig = CardConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    execution: ExecutionConfig = ExecutionConfig()
    lock: LockConfig = LockConfig()
    # [slo]: latency, errors, availability, fallbacks, drift and load the service is held to
    # (runtime/schema.py::ServiceLevels, shared with the service, which cuts its buckets there)
    slo: ServiceLevels = ServiceLevels()
    deploy: DeployConfig = DeployConfig()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                "must be lowercase letters, digits, '.', '_' or '-', starting and ending "
                "with a letter or digit (it becomes the bento name)"
            )
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError("must be a semantic version such as 1.2.0")
        return value

    @field_validator("gates")
    @classmethod
    def _check_gates(cls, value: dict[str, str]) -> dict[str, str]:
        for metric, spec in value.items():
            if not isinstance(spec, str) or not _GATE.match(spec):
                raise ValueError(
                    f"gate for '{metric}' is {spec!r}; write an operator and a number, "
                    'such as ">= 0.9" (operators: >=, >, <=, <, ==)'
                )
        return value

    def parsed_gates(self) -> tuple[Gate, ...]:
        gates = []
        for metric, spec in sorted(self.gates.items()):
            match = _GATE.match(spec)
            assert match is not None  # checked by the validator
            gates.append(Gate(metric, match.group(1), float(match.group(2))))
        return tuple(gates)

    def resolved_owners(self) -> Owners:
        """[owners], with ``owner`` standing for the model's owner when [owners] model is unset."""
        if self.owners.model is None and self.owner:
            return self.owners.model_copy(update={"model": self.owner})
        return self.owners

    def service_name(self, notebook: Path) -> str:
        """The configured name, or one derived from the notebook's file stem."""
        if self.name:
            return self.name
        derived = re.sub(r"[^a-z0-9._-]+", "-", notebook.stem.lower()).strip("-._")
        return derived or "service"


#: Whether a change of a top-level key of the config can alter what the training cells produce
#: (docs/reproducibility.md). Only [execution] (the kernel's environment) reaches the training
#: cells; everything else is read after them: by the probe (contract inference, evaluation,
#: artifacts, monitoring reference), by the release's files or by the served bento. A change of a
#: non-training key re-packages with the trained state of the last run. Every key of
#: :class:`Config` is in exactly one of the two (tests/test_reuse.py fails on a new key in neither).
TRAINING_KEYS = frozenset({"execution"})
NON_TRAINING_KEYS = frozenset(
    {
        "name", "version", "owner", "owners", "gates", "fallback", "service", "contract",
        "evaluation", "card", "monitoring", "artifacts", "slo", "deploy", "lock",
    }
)  # fmt: skip


def training_config(config: Config) -> dict[str, Any]:
    """The part of ``config`` the training cells can see (part of the trained state's key)."""
    dumped = config.model_dump(mode="json")
    return {key: dumped[key] for key in sorted(TRAINING_KEYS)}


@dataclass(frozen=True)
class LoadedConfig:
    """A config together with where it came from (for messages and provenance)."""

    config: Config
    source: str  # "nb2prod.toml", "pyproject.toml [tool.nb2prod]", or "defaults"
    path: Path | None


def load_config(notebook: Path, explicit: Path | None = None) -> LoadedConfig:
    """Find and validate the configuration for ``notebook``.

    Order: ``explicit`` (``--config``), then ``nb2prod.toml`` beside the notebook, then the nearest
    enclosing ``pyproject.toml`` with a ``[tool.nb2prod]`` table, else the defaults.
    """
    if explicit is not None:
        return load_config_file(explicit)
    beside = notebook.resolve().parent / "nb2prod.toml"
    if beside.is_file():
        return _from_file(beside, table=None)
    for directory in notebook.resolve().parents:
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _tool_table(_read_toml(pyproject)) is not None:
            return _from_file(pyproject, table=_tool_table)
    return LoadedConfig(Config(), "defaults", None)


def load_config_file(path: Path) -> LoadedConfig:
    """A config file given by name: an nb2prod.toml, or a pyproject.toml's [tool.nb2prod]."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return _from_file(path, table=_tool_table if path.name == "pyproject.toml" else None)


def _tool_table(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    table = data.get("tool", {}).get("nb2prod")
    return table if isinstance(table, Mapping) else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def _from_file(
    path: Path, table: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None
) -> LoadedConfig:
    data: Mapping[str, Any] | None = _read_toml(path)
    where = str(path)
    if table is not None:
        data = table(data or {})
        where = f"{path} [tool.nb2prod]"
        if data is None:
            raise ConfigError(f"{path}: has no [tool.nb2prod] table")
    try:
        config = Config.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from None
    return LoadedConfig(config, where, path)


def _describe(exc: ValidationError, where: str) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"'{key}': {message}")
    return f"{where}: " + "; ".join(problems)
