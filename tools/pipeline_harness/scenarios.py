"""Callbacks as Twilio would send them: realistic lifecycles, signed, no I/O.

Pure and seeded, so ``send``, the benchmark and tests share one generator and
a seed always gives the same SIDs, numbers, outcomes and order. A
`Lifecycle` is every status callback of one message or call; `sign` turns a
`Callback` into the exact HTTP request (URL as written, form body,
``X-Twilio-Signature`` computed by the official ``twilio`` library).

Numbers are E.164 in the +1 555 range, which no carrier assigns; SIDs are
``SM``/``CA``/``AC`` plus 32 hex digits like Twilio's.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from urllib.parse import quote, urlencode, urlsplit

from twilio.request_validator import RequestValidator

CALLBACK_ROUTE = "/twilio"
CALLBACK_WITH_PARAMS_ROUTE = "/twilio-params"
API_VERSION = "2010-04-01"
CONTENT_TYPE = "application/x-www-form-urlencoded"
USER_AGENT = "TwilioProxy/1.1"
SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"

# Final statuses of failed messages and the codes Twilio reports with them.
UNDELIVERED_CODES: tuple[str, ...] = ("30003", "30005", "30006", "30007")
FAILED_CODES: tuple[str, ...] = ("21610", "30034")
KNOWN_ERROR_CODES: tuple[str, ...] = UNDELIVERED_CODES + FAILED_CODES
# Categories for generated /twilio-params callbacks: values that need careful encoding.
SAMPLE_CATEGORIES: tuple[str, ...] = (
    "marketing",
    "alerts & reminders",
    "O'Brien's orders",
    "2+2 offers",
    "café résumé",
    "order status",
)
_SENDER_POOL = 3
_MIN_RECIPIENT_POOL = 20


class Product(StrEnum):
    MESSAGE = "message"
    CALL = "call"


class Signing(StrEnum):
    """How a callback's request is signed."""

    VALID = "valid"
    FORGED = "forged"
    UNSIGNED = "unsigned"


class Kind(StrEnum):
    """Which products a scenario simulates."""

    MESSAGE = "message"
    CALL = "call"
    MIXED = "mixed"


@dataclass(frozen=True)
class Callback:
    """One status callback: route, custom query values and Twilio's form parameters."""

    product: Product
    sid: str
    status: str
    params: tuple[tuple[str, str], ...]
    route: str = CALLBACK_ROUTE
    query: tuple[tuple[str, str], ...] = ()
    signing: Signing = Signing.VALID
    # 1 for the first delivery; a repeat (Twilio retry) is identical but for this.
    attempt: int = 1

    @property
    def form(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def error_code(self) -> str | None:
        return self.form.get("ErrorCode")

    @property
    def idempotency_token(self) -> str:
        """Stable per callback content, as Twilio's I-Twilio-Idempotency-Token is per attempt series."""
        digest = hashlib.sha256(urlencode(sorted(self.params)).encode("utf-8"))
        return f"{self.sid}-{digest.hexdigest()[:24]}"


@dataclass(frozen=True)
class Lifecycle:
    """Every callback of one resource, in the order they are to be sent."""

    product: Product
    sid: str
    callbacks: tuple[Callback, ...]
    out_of_order: bool = False

    @property
    def final_status(self) -> str:
        """The status the resource ends in, whatever order its callbacks arrive in."""
        return max(self.callbacks, key=_position).status


@dataclass(frozen=True)
class ScenarioOptions:
    """What to simulate; every fraction is in [0, 1]."""

    count: int = 1
    kind: Kind = Kind.MESSAGE
    seed: int | None = None
    error_rate: float = 0.0
    error_codes: Sequence[str] = KNOWN_ERROR_CODES
    out_of_order: float = 0.0
    duplicates: float = 0.0
    forged: float = 0.0
    unsigned: float = 0.0
    route: str | None = None
    custom_params: Sequence[tuple[str, str]] = ()
    account_sid: str | None = None
    start: datetime | None = None
    # Messages get a Messaging Service SID when sent through one.
    messaging_service: bool = True

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")
        for name in ("error_rate", "out_of_order", "duplicates", "forged", "unsigned"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.forged + self.unsigned > 1.0:
            raise ValueError("forged and unsigned fractions add up to more than 1")
        if self.route not in (None, CALLBACK_ROUTE, CALLBACK_WITH_PARAMS_ROUTE):
            raise ValueError(f"route must be {CALLBACK_ROUTE} or {CALLBACK_WITH_PARAMS_ROUTE}")
        if self.route == CALLBACK_ROUTE and self.custom_params:
            raise ValueError(f"custom parameters need the {CALLBACK_WITH_PARAMS_ROUTE} route")

    @property
    def effective_route(self) -> str:
        if self.route:
            return self.route
        return CALLBACK_WITH_PARAMS_ROUTE if self.custom_params else CALLBACK_ROUTE


def sid(prefix: str, rng: random.Random) -> str:
    """A Twilio-shaped SID: two letters and 32 lowercase hex digits."""
    return f"{prefix}{rng.getrandbits(128):032x}"


def phone_number(rng: random.Random) -> str:
    """An E.164 number in the unassigned +1 555 range."""
    return f"+1555{rng.randrange(10**7):07d}"


def _position(callback: Callback) -> int:
    if callback.product is Product.CALL:
        return int(callback.form.get("SequenceNumber", "0"))
    return _MESSAGE_ORDER.get(callback.status, 0)


_MESSAGE_ORDER = {"queued": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}


@dataclass
class _Generator:
    options: ScenarioOptions
    rng: random.Random
    # Arrival effects draw from their own stream, so one seed gives the same
    # messages and calls whether or not they arrive shuffled, repeated or forged.
    arrival: random.Random
    account_sid: str
    start: datetime
    senders: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    messaging_service_sid: str = ""

    @classmethod
    def create(cls, options: ScenarioOptions) -> _Generator:
        rng = random.Random(options.seed)  # noqa: S311 - simulation, not security
        arrival_seed = None if options.seed is None else f"arrival:{options.seed}"
        arrival = random.Random(arrival_seed)  # noqa: S311 - simulation, not security
        account_sid = options.account_sid or sid("AC", rng)
        start = options.start or datetime.now(UTC)
        generator = cls(options, rng, arrival, account_sid, start)
        generator.senders = [phone_number(rng) for _ in range(_SENDER_POOL)]
        # Recipients repeat, as real traffic does, so a bad number fails more than once.
        pool = max(_MIN_RECIPIENT_POOL, options.count // 2)
        generator.recipients = [phone_number(rng) for _ in range(pool)]
        generator.messaging_service_sid = sid("MG", rng)
        return generator

    def lifecycles(self) -> Iterator[Lifecycle]:
        for index in range(self.options.count):
            product = self._product()
            at = self.start + timedelta(milliseconds=index * 37)
            lifecycle = self._message(at) if product is Product.MESSAGE else self._call(at)
            yield self._deliver(lifecycle)

    def _product(self) -> Product:
        if self.options.kind is Kind.MESSAGE:
            return Product.MESSAGE
        if self.options.kind is Kind.CALL:
            return Product.CALL
        return Product.MESSAGE if self.rng.random() < 0.7 else Product.CALL

    def _query(self, index_sid: str) -> tuple[tuple[str, str], ...]:
        if self.options.effective_route != CALLBACK_WITH_PARAMS_ROUTE:
            return ()
        if self.options.custom_params:
            return tuple(self.options.custom_params)
        return (("id", f"order-{index_sid[-8:]}"), ("category", self.rng.choice(SAMPLE_CATEGORIES)))

    def _message(self, at: datetime) -> Lifecycle:
        message_sid = sid("SM", self.rng)
        sender, recipient = self.rng.choice(self.senders), self.rng.choice(self.recipients)
        # Every draw is made whatever the outcome, so the error rate changes outcomes only.
        failing = self.rng.random() < self.options.error_rate
        chosen = self.rng.choice(list(self.options.error_codes))
        statuses: list[tuple[str, str | None]] = [("queued", None), ("sent", None), ("delivered", None)]
        if failing:
            # Twilio fails a message before it leaves (no `sent`); undelivered comes after `sent`.
            if chosen in FAILED_CODES:
                statuses = [("queued", None), ("failed", chosen)]
            else:
                statuses = [("queued", None), ("sent", None), ("undelivered", chosen)]
        query = self._query(message_sid)
        callbacks = []
        for step, (status, code) in enumerate(statuses):
            params = {
                "ApiVersion": API_VERSION,
                "AccountSid": self.account_sid,
                "From": sender,
                "To": recipient,
                "MessageSid": message_sid,
                "SmsSid": message_sid,
                "MessageStatus": status,
                "SmsStatus": status,
            }
            if self.options.messaging_service:
                params["MessagingServiceSid"] = self.messaging_service_sid
            if code:
                params["ErrorCode"] = code
            if status == "delivered":
                params["RawDlrDoneDate"] = (at + timedelta(seconds=2 + step)).strftime("%y%m%d%H%M")
            callbacks.append(
                Callback(
                    Product.MESSAGE,
                    message_sid,
                    status,
                    tuple(params.items()),
                    self.options.effective_route,
                    query,
                )
            )
        return Lifecycle(Product.MESSAGE, message_sid, tuple(callbacks))

    def _call(self, at: datetime) -> Lifecycle:
        call_sid = sid("CA", self.rng)
        caller, called = self.rng.choice(self.senders), self.rng.choice(self.recipients)
        failing = self.rng.random() < self.options.error_rate
        unanswered = self.rng.choice(("busy", "no-answer"))
        statuses = ["initiated", "ringing", "in-progress", "completed"]
        if failing:
            statuses = ["initiated", "ringing", unanswered]
        duration = self.rng.randint(5, 600)
        query = self._query(call_sid)
        callbacks = []
        for sequence, status in enumerate(statuses):
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": call_sid,
                "CallStatus": status,
                "CallbackSource": "call-progress-events",
                "Called": called,
                "Caller": caller,
                "Direction": "outbound-api",
                "From": caller,
                "To": called,
                "SequenceNumber": str(sequence),
                "Timestamp": format_datetime(at + timedelta(seconds=sequence * 3)),
            }
            if status == "completed":
                params["CallDuration"] = str(duration)
                params["Duration"] = str(-(-duration // 60))
                params["SipResponseCode"] = "200"
            elif status in ("busy", "no-answer"):
                params["CallDuration"] = "0"
                params["SipResponseCode"] = "486" if status == "busy" else "487"
            callbacks.append(
                Callback(
                    Product.CALL,
                    call_sid,
                    status,
                    tuple(params.items()),
                    self.options.effective_route,
                    query,
                )
            )
        return Lifecycle(Product.CALL, call_sid, tuple(callbacks))

    def _signing(self) -> Signing:
        draw = self.arrival.random()
        if draw < self.options.forged:
            return Signing.FORGED
        if draw < self.options.forged + self.options.unsigned:
            return Signing.UNSIGNED
        return Signing.VALID

    def _deliver(self, lifecycle: Lifecycle) -> Lifecycle:
        """Apply arrival effects: signing mode, out-of-order shuffling, Twilio retries."""
        callbacks = [replace(callback, signing=self._signing()) for callback in lifecycle.callbacks]
        out_of_order = len(callbacks) > 1 and self.arrival.random() < self.options.out_of_order
        if out_of_order:
            shuffled = callbacks[:]
            self.arrival.shuffle(shuffled)
            # A shuffle may leave the order as it was; arrival must really be out of order.
            callbacks = shuffled if shuffled != callbacks else callbacks[::-1]
        delivered: list[Callback] = []
        for callback in callbacks:
            delivered.append(callback)
            if self.arrival.random() < self.options.duplicates:
                delivered.append(replace(callback, attempt=2))
        return replace(lifecycle, callbacks=tuple(delivered), out_of_order=out_of_order)


def generate(options: ScenarioOptions) -> Iterator[Lifecycle]:
    """The scenario's lifecycles, deterministic for a given seed and start time."""
    return _Generator.create(options).lifecycles()


@dataclass(frozen=True)
class SignedRequest:
    """The exact HTTP request for one callback."""

    url: str
    body: str
    headers: Mapping[str, str]
    callback: Callback


def encode_query(query: Sequence[tuple[str, str]]) -> str:
    """Standard percent-encoding (RFC 3986): spaces as %20, every reserved character escaped."""
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in query)


def callback_url(base_url: str, callback: Callback) -> str:
    """The URL Twilio calls: base, route and custom query, as written.

    A base URL that already names a route (or carries a query string) is the
    StatusCallback URL itself; its query string is kept byte for byte.
    """
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith((CALLBACK_ROUTE, CALLBACK_WITH_PARAMS_ROUTE)) or parts.query:
        url = base_url
    else:
        url = base_url.rstrip("/") + callback.route
    if callback.query:
        url += ("&" if "?" in url else "?") + encode_query(callback.query)
    return url


def _forged_token(token: str) -> str:
    # Any other token gives a well-formed signature that does not verify.
    return hashlib.sha256(("forged:" + token).encode("utf-8")).hexdigest()[:32]


def sign(callback: Callback, base_url: str, auth_token: str) -> SignedRequest:
    """The request for a callback, signed over its exact URL as its signing mode says."""
    url = callback_url(base_url, callback)
    form = callback.form
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        IDEMPOTENCY_HEADER: callback.idempotency_token,
    }
    if callback.signing is not Signing.UNSIGNED:
        token = auth_token if callback.signing is Signing.VALID else _forged_token(auth_token)
        headers[SIGNATURE_HEADER] = RequestValidator(token).compute_signature(url, form)
    return SignedRequest(url, urlencode(callback.params), headers, callback)
