"""Landing contract (docs/METRICS.md#landing-contract) as data: tables, columns, types, enums, constraints, keys.

Used by the generator (what to write), the loaders (what to validate) and the raw DDL.
A column type is one of: string, timestamp, date, int, bool, decimal, json.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PLATFORMS = ("content", "live", "private", "group_buy")
CHANNELS = ("kol_content", "live_stream", "community", "referral", "paid_ads", "search", "organic")
AGE_BANDS = ("<18", "18-24", "25-30", "31-40", "41-50", ">50")
REGIONS = ("CN", "EU", "US", "OTHER")
ORDER_STATUSES = ("paid", "refunded", "cancelled")
SCENARIOS = ("content", "live", "community", "group_buy", "search", "other")
EVENT_TYPES = (
    "app_open", "product_view", "content_view", "search", "like", "comment", "favorite", "follow",
    "share", "add_to_cart", "live_enter", "community_join", "community_open", "check_in", "ugc_post",
    "invite_sent", "coupon_claim", "assist",
)

# Parameter bounding every order money column (docs/METRICS.md#validity-quarantine-and-reconciliation): sums of
# DECIMAL(18,2) amounts must never overflow downstream, so one order above it is invalid (amount_out_of_range).
ORDER_AMOUNT_MAX = "max_order_amount"

# DuckDB type for each contract type in the raw layer. Timestamps are naive UTC (docs/METRICS.md#conventions: they arrive in UTC).
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "decimal": "DECIMAL(18,2)",
    "json": "VARCHAR",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False
    enum: tuple[str, ...] | None = None
    pii: bool = False
    min_value: float | None = None
    max_value: float | None = None
    # upper bound read from a parameter (vars.ulm) at load time; above it -> ``amount_out_of_range``
    max_param: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # column -> referenced table.column (all reference users.user_id)
    foreign_keys: dict[str, str] = field(default_factory=dict)
    # versioned tables (docs/METRICS.md#consent-and-attribute-changes): a row for a known key whose
    # ``version_column`` is newer than every stored version is a new version when it changes only ``mutable``
    # columns; a change to any other column is a conflict, an older or equal version a ``stale_update``.
    version_column: str | None = None
    mutable: tuple[str, ...] = ()
    # columns naming the account a row belongs to (erasure, suppression: docs/METRICS.md#privacy)
    owner_columns: tuple[str, ...] = ()
    # columns naming ANOTHER account the row points at (nulled when that account is erased)
    reference_columns: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def col(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name, type_, **kw) -> Column:
    return Column(name, type_, **kw)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "users",
            (
                _c("user_id", "string", required=True),
                _c("platform", "string", required=True, enum=PLATFORMS),
                _c("registered_at", "timestamp", required=True),
                _c("acquisition_channel", "string", required=True, enum=CHANNELS),
                _c("kol_id", "string"),
                _c("referrer_user_id", "string"),
                _c("city_tier", "int", min_value=1, max_value=5),
                _c("age_band", "string", enum=AGE_BANDS),
                _c("region", "string", enum=REGIONS),
                _c("phone", "string", pii=True),
                _c("device_id", "string", pii=True),
                _c("union_id", "string", pii=True),
                _c("consent_analytics", "bool"),
                _c("consent_marketing", "bool"),
                _c("consent_updated_at", "timestamp"),
            ),
            key=("user_id",),
            version_column="consent_updated_at",
            mutable=("consent_analytics", "consent_marketing", "consent_updated_at", "city_tier", "age_band", "region"),
            owner_columns=("user_id",),
            reference_columns=("referrer_user_id",),
        ),
        Table(
            "events",
            (
                _c("event_id", "string", required=True),
                _c("user_id", "string", required=True),
                _c("event_type", "string", required=True, enum=EVENT_TYPES),
                _c("event_ts", "timestamp", required=True),
                _c("platform", "string", enum=PLATFORMS),
                _c("session_id", "string"),
                _c("product_id", "string"),
                _c("category", "string"),
                _c("content_id", "string"),
                _c("kol_id", "string"),
                _c("community_id", "string"),
                _c("share_id", "string"),
                _c("properties", "json"),
            ),
            key=("event_id",),
            foreign_keys={"user_id": "users.user_id"},
            owner_columns=("user_id",),
        ),
        Table(
            "orders",
            (
                _c("order_id", "string", required=True),
                _c("user_id", "string", required=True),
                _c("order_ts", "timestamp", required=True),
                _c("status", "string", required=True, enum=ORDER_STATUSES),
                _c("gross_amount", "decimal", required=True, min_value=0, max_param=ORDER_AMOUNT_MAX),
                _c("discount_amount", "decimal", required=True, min_value=0, max_param=ORDER_AMOUNT_MAX),
                _c("paid_amount", "decimal", required=True, min_value=0, max_param=ORDER_AMOUNT_MAX),
                _c("refund_amount", "decimal", required=True, min_value=0, max_param=ORDER_AMOUNT_MAX),
                _c("scenario", "string", enum=SCENARIOS),
                _c("category", "string"),
                _c("kol_id", "string"),
                _c("community_id", "string"),
                _c("share_id", "string"),
                _c("coupon_id", "string"),
            ),
            key=("order_id",),
            foreign_keys={"user_id": "users.user_id"},
            owner_columns=("user_id",),
        ),
        Table(
            "marketing_spend",
            (
                _c("spend_date", "date", required=True),
                _c("acquisition_channel", "string", required=True, enum=CHANNELS),
                _c("platform", "string", required=True, enum=PLATFORMS),
                _c("spend", "decimal", required=True, min_value=0),
            ),
            key=("spend_date", "acquisition_channel", "platform"),
        ),
        Table(
            "invites",
            (
                _c("invite_id", "string", required=True),
                _c("inviter_user_id", "string", required=True),
                _c("sent_at", "timestamp", required=True),
                _c("invitee_user_id", "string"),
                _c("accepted_at", "timestamp"),
            ),
            key=("invite_id",),
            foreign_keys={"inviter_user_id": "users.user_id", "invitee_user_id": "users.user_id"},
            owner_columns=("inviter_user_id",),
            reference_columns=("invitee_user_id",),
        ),
        Table(
            "nps_responses",
            (
                _c("response_id", "string", required=True),
                _c("user_id", "string", required=True),
                _c("responded_at", "timestamp", required=True),
                _c("score", "int", required=True, min_value=0, max_value=10),
            ),
            key=("response_id",),
            foreign_keys={"user_id": "users.user_id"},
            owner_columns=("user_id",),
        ),
        Table(
            "erasure_requests",
            (
                _c("request_id", "string", required=True),
                _c("user_id", "string", required=True),
                _c("requested_at", "timestamp", required=True),
            ),
            key=("request_id",),
            # an erasure request may name an account that is already erased or never landed: no FK check
        ),
    ]
}

# Row-level constraints beyond single columns (checked by the loader, docs/METRICS.md#landing-contract).
# (table, rule_code, SQL boolean that must hold; NULL-safe where columns are optional)
ROW_RULES: list[tuple[str, str, str]] = [
    ("orders", "discount_le_gross", "discount_amount <= gross_amount"),
    ("orders", "paid_eq_gross_minus_discount", "paid_amount = gross_amount - discount_amount"),
    ("orders", "refund_le_paid", "refund_amount <= paid_amount"),
    ("invites", "accepted_after_sent", "accepted_at IS NULL OR accepted_at >= sent_at"),
    ("invites", "accepted_has_invitee", "(accepted_at IS NULL) = (invitee_user_id IS NULL)"),
]

LOAD_COLUMNS = (("_load_id", "VARCHAR"), ("_loaded_at", "TIMESTAMP"), ("_source_file", "VARCHAR"))


def raw_ddl(table: str, schema: str = "raw") -> str:
    """CREATE TABLE statement for a raw table: contract columns + load metadata."""
    t = TABLES[table]
    cols = [f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in t.columns]
    cols += [f"{n} {ty}" for n, ty in LOAD_COLUMNS]
    return f"CREATE TABLE IF NOT EXISTS {schema}.{table} (\n  " + ",\n  ".join(cols) + "\n)"


PII_COLUMNS = {t.name: [c.name for c in t.columns if c.pii] for t in TABLES.values()}
