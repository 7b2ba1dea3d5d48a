"""The gateway's configuration: routing profiles, client keys, upstream limits and the feedback store.

Everything has a default, so ``tagrouter serve ROUTER_DIR`` runs without a config file. Relative paths in
a config file are taken relative to the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tagrouter.catalog import Endpoint
from tagrouter.chat import MAX_ROUTING_CHARS
from tagrouter.deciding import Rule
from tagrouter.errors import from_validation_error
from tagrouter.fileio import read_yaml_mapping
from tagrouter.server.shadow import ShadowConfig

#: The profile a request gets with ``model: tagrouter`` (or when the config names no other default).
DEFAULT_PROFILE = "tagrouter"
#: Default of ``max_upstream_line_bytes``: the longest line of an upstream's event stream.
MAX_UPSTREAM_LINE_BYTES = 1_000_000
#: Default of ``max_upstream_body_bytes``: the most bytes of one upstream answer (a body, or a whole stream).
MAX_UPSTREAM_BODY_BYTES = 64_000_000


class Budget(BaseModel):
    """Calibrate a profile's knob at start-up on the queries of history files, to one of two targets."""

    model_config = ConfigDict(extra="forbid")

    history: list[Path] = Field(min_length=1, description="history files whose queries calibrate the knob")
    mean_cost_usd: float | None = Field(default=None, gt=0, description="target mean cost per query")
    strong_share: float | None = Field(default=None, ge=0, le=1, description="target share of the dearest")

    @model_validator(mode="after")
    def _one_target(self) -> Budget:
        if (self.mean_cost_usd is None) == (self.strong_share is None):
            raise ValueError("a budget needs exactly one target: mean_cost_usd or strong_share")
        return self


class Profile(BaseModel):
    """A routing profile, chosen by a request's ``model`` field: a decision rule with a fixed knob or a
    budget, and the reference model that the 'cost saved' metric compares against."""

    model_config = ConfigDict(extra="forbid")

    rule: Rule | None = Field(default=None, description="decision rule; default: the saved router's rule")
    knob: float | None = Field(default=None, description="θ or λ; default: the saved router's knob")
    budget: Budget | None = None
    reference_model: str | None = Field(default=None, description="default: the dearest catalogue model")

    @model_validator(mode="after")
    def _knob_or_budget(self) -> Profile:
        if self.knob is not None and self.budget is not None:
            raise ValueError("give a profile either a knob or a budget, not both")
        return self


class Affinity(BaseModel):
    """Session affinity (see ``tagrouter.server.affinity``): a conversation keeps its model for ``ttl_s``
    seconds after its last turn and at most ``max_turns`` turns."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    ttl_s: float = Field(default=1800.0, gt=0)
    max_turns: int = Field(default=50, ge=1)
    max_sessions: int = Field(default=100_000, ge=1, description="pins kept in memory (LRU beyond)")
    by_opening: bool = Field(
        default=True, description="key conversations that send no session id by their opening messages"
    )
    max_session_id_chars: int = Field(
        default=256, ge=8, le=4096, description="a longer x-session-id header or user field is a 400"
    )


class Admission(BaseModel):
    """Admission control: requests beyond these limits get a 429 with ``Retry-After``."""

    model_config = ConfigDict(extra="forbid")

    max_chat_in_flight: int = Field(
        default=256, ge=1, description="chat requests being routed or waiting for their upstream at once"
    )
    max_feedback_in_flight: int = Field(
        default=64, ge=1, description="feedback calls waiting for their commit at once"
    )
    feedback_per_s: float = Field(
        default=100.0, gt=0, description="feedback calls accepted per second (bursts of one second's worth)"
    )
    requests_per_key_per_s: float | None = Field(
        default=None, gt=0, description="requests per second per client key on /v1 (none: no limit)"
    )
    max_in_flight_per_key: int = Field(
        default=128,
        ge=1,
        description="requests of one client key in the gateway at once, from their headers to the end of "
        "their answer (bodies being read and streams included; needs api_keys)",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="a request body not received within this many seconds is a 408"
    )
    refusal_spread_s: float = Field(
        default=1.0,
        ge=0,
        description="a 429 is answered after a random delay of up to this many seconds, so that clients "
        "refused together come back spread out (Retry-After counts whole seconds; 0: answer at once)",
    )


class Learning(BaseModel):
    """Learning from feedback (see ``tagrouter.live``): exploration's budget and the bound on what one
    client key's feedback may weigh."""

    model_config = ConfigDict(extra="forbid")

    exploration_budget: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="exploration's extra expected dollars as a share of each profile's spend (0: never explore)",
    )
    per_key_weight: float | None = Field(
        default=100.0, gt=0, description="feedback weight one client key may add per window (none: unbounded)"
    )
    window_s: float = Field(default=3600.0, gt=0, description="the window of per_key_weight")
    history: list[Path] = Field(
        default_factory=list,
        description="the router's fit history: with it, the scorer's settings are chosen again, in the "
        "background, each time feedback doubles the queries learned",
    )


class GatewayConfig(BaseModel):
    """All settings of the gateway (see ``docs/gateway.md`` for a complete example)."""

    model_config = ConfigDict(extra="forbid")

    profiles: dict[str, Profile] = Field(default_factory=lambda: {DEFAULT_PROFILE: Profile()})
    default_profile: str = DEFAULT_PROFILE
    api_keys: list[str] = Field(default_factory=list, description="accepted client bearer keys")
    api_keys_env: str | None = Field(default=None, description="env var with comma-separated client keys")
    admin_keys: list[str] = Field(
        default_factory=list, description="bearer keys of the dashboard and /admin endpoints (none: off)"
    )
    reload_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="how often to check the router folder's CURRENT for a new version (0: never)",
    )
    dashboard_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="how often the dashboard records the traffic per model (its time axis)",
    )
    endpoints: dict[str, Endpoint] = Field(
        default_factory=dict, description="per-model overrides of the catalogue's endpoints"
    )
    fallback_depth: int = Field(default=2, ge=0, description="further models tried after the first fails")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    upstream_timeout_s: float | None = Field(
        default=None, gt=0, description="read timeout; default: each catalogue endpoint's timeout_s"
    )
    max_upstream_connections: int = Field(default=200, ge=1)
    route_in_threadpool: bool = Field(
        default=False,
        description="route in worker threads: set it for slow taggers (transformers, an LLM endpoint); "
        "the default embedded tagger is faster on the event loop",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="larger bodies get a 413")
    max_route_queries: int = Field(default=256, ge=1)
    max_routing_chars: int = Field(
        default=MAX_ROUTING_CHARS,
        ge=100,
        description="route on the first and last half of this many characters of a longer text "
        "(the whole request still goes upstream)",
    )
    thread_routing_chars: int = Field(
        default=16_000,
        ge=0,
        description="a routing batch with more text than this is routed in a worker thread, off the loop",
    )
    admission: Admission = Field(default_factory=Admission)
    feedback_db: Path | str = Field(
        default=Path("tagrouter-feedback.sqlite3"),
        description="SQLite file, or postgresql://… (extra postgres); replicas sharing it learn together",
    )
    follow_interval_s: float = Field(
        default=1.0, ge=0, description="how often to apply feedback other replicas stored (0: never)"
    )
    feedback_synchronous: Literal["normal", "full"] = Field(
        default="normal", description="SQLite 'full' also survives power loss, at an fsync per batch"
    )
    learn_interval_s: float = Field(
        default=0.5, gt=0, description="the router learns new feedback at most this often, all of it at once"
    )
    remember_requests: int = Field(default=100_000, ge=1, description="request ids kept for feedback")
    affinity: Affinity = Field(default_factory=Affinity)
    conversation_weight: float | str = Field(
        default="router",
        description="how earlier user turns count: 'router' (the fit's choice, else the measured "
        "fallback), a weight of their scores in [0, 1] (0: the last user message only), 'last' or "
        "'concatenated'",
    )
    remember_requests_bytes: int = Field(
        default=64_000_000, ge=1_000_000, description="bytes of routing text kept for those request ids"
    )
    shadow: ShadowConfig | None = Field(default=None, description="shadow judging (off by default)")
    max_upstream_line_bytes: int = Field(
        default=MAX_UPSTREAM_LINE_BYTES, ge=1024, description="a longer upstream stream line ends the stream"
    )
    max_upstream_body_bytes: int = Field(
        default=MAX_UPSTREAM_BODY_BYTES,
        ge=1024,
        description="an upstream answer (body or whole stream) over this is a failure, not relayed",
    )
    learning: Learning = Field(default_factory=Learning)
    admin_keys: list[str] = Field(
        default_factory=list, description="client keys that may give feedback on any request"
    )

    @field_validator("feedback_db", mode="before")
    @classmethod
    def _file_unless_url(cls, value: object) -> object:
        """A PostgreSQL URL stays text; anything else is a SQLite file path."""
        if isinstance(value, str) and not value.startswith(("postgresql://", "postgres://")):
            return Path(value)
        return value

    @field_validator("conversation_weight", mode="before")
    @classmethod
    def _conversation_setting(cls, value: object) -> object:
        """'router', 'last', 'concatenated' or a weight in [0, 1] (see :func:`conversation.from_setting`);
        checked before coercion, so that ``true`` is not taken for the weight 1."""
        names = ("router", "last", "concatenated")
        if (
            (isinstance(value, str) and value not in names)
            or not isinstance(value, str | int | float)
            or isinstance(value, bool)
        ):
            raise ValueError(
                f"expected 'router', 'last', 'concatenated' or a weight in [0, 1], got {value!r}"
            )
        if not isinstance(value, str) and not 0.0 <= value <= 1.0:
            raise ValueError(f"a weight of the earlier turns must be in [0, 1], got {value!r}")
        return value

    @model_validator(mode="after")
    def _default_profile_exists(self) -> GatewayConfig:
        if DEFAULT_PROFILE not in self.profiles and self.default_profile == DEFAULT_PROFILE:
            self.profiles = {DEFAULT_PROFILE: Profile(), **self.profiles}
        if self.default_profile not in self.profiles:
            raise ValueError(
                f"default_profile {self.default_profile!r} is not among the profiles "
                f"({', '.join(self.profiles)})"
            )
        return self

    @model_validator(mode="after")
    def _key_limits_have_keys(self) -> GatewayConfig:
        """A per-key rate limit without client keys would silently limit nothing: refuse it."""
        if self.admission.requests_per_key_per_s is not None and not (self.api_keys or self.api_keys_env):
            raise ValueError(
                "admission.requests_per_key_per_s limits each client key, but no keys are configured "
                "(set api_keys or api_keys_env, or remove the limit)"
            )
        return self

    def client_keys(self) -> list[str]:
        """The accepted client keys: ``api_keys`` plus those in the ``api_keys_env`` variable, read now."""
        keys = list(self.api_keys)
        if self.api_keys_env:
            keys += [k.strip() for k in os.environ.get(self.api_keys_env, "").split(",") if k.strip()]
        return keys

    def resolved(self, base: Path) -> GatewayConfig:
        """This config with relative paths made relative to ``base`` (the config file's folder)."""

        def fix(path: Path) -> Path:
            return path if path.is_absolute() else base / path

        profiles = {
            name: p.model_copy(
                update={"budget": p.budget.model_copy(update={"history": [fix(h) for h in p.budget.history]})}
            )
            if p.budget
            else p
            for name, p in self.profiles.items()
        }
        feedback_db = fix(self.feedback_db) if isinstance(self.feedback_db, Path) else self.feedback_db
        learning = self.learning.model_copy(update={"history": [fix(h) for h in self.learning.history]})
        return self.model_copy(
            update={"feedback_db": feedback_db, "profiles": profiles, "learning": learning}
        )


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Read and validate a YAML gateway config; errors name the file and the field at fault."""
    path = Path(path)
    raw = read_yaml_mapping(path, "gateway config")
    try:
        config = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise from_validation_error(exc, path=path) from None
    return config.resolved(path.resolve().parent)
