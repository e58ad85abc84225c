"""Persons, their latent traits and their (potential) platform accounts with fake PII.

Persons are drawn once, up front, sorted by registration day. Each person owns a primary account and,
for ~``multi_account_share`` of persons, one or two secondary accounts on other platforms that are
created later (only if the person is still around). Accounts of one person are linked the way OneID
(docs/METRICS.md#identity) can discover: by a shared phone or a shared union_id, including multi-hop chains
(A-B share a phone, B-C share a union_id). Unrelated persons sometimes share a device id.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ulm.core.contract import CHANNELS, PLATFORMS

from .calendar import Calendar
from .settings import CATEGORY_WEIGHTS, GenSettings

PLATFORM_PREFIX = ("ct", "lv", "pv", "gb")
LINK_NONE, LINK_PHONE, LINK_UNION = 0, 1, 2
LINK_NAMES = ("none", "phone", "union_id")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8)
CH = {c: i for i, c in enumerate(CHANNELS)}
PL = {p: i for i, p in enumerate(PLATFORMS)}


@dataclass
class Persons:
    """Per-person arrays (index = person number, sorted by registration day)."""
    reg_day: np.ndarray
    channel: np.ndarray
    platform: np.ndarray
    region: np.ndarray
    city_tier: np.ndarray
    age_band: np.ndarray
    consent_a: np.ndarray
    consent_m: np.ndarray
    kol: np.ndarray  # acquiring KOL (kol_content / live_stream channels), -1 otherwise
    fav_kol: np.ndarray
    community: np.ndarray  # community the person will join, -1 for none
    join_gap: np.ndarray  # days after registration before joining the community
    fav_cat: np.ndarray
    via_share: np.ndarray  # registers through a share link (community channel)
    tourist: np.ndarray
    act: np.ndarray
    drop: np.ndarray
    lam: np.ndarray
    spend: np.ndarray
    share_rate: np.ndarray
    influence: np.ndarray
    invite_rate: np.ndarray
    assist_rate: np.ndarray
    ugc_rate: np.ndarray
    browse_mu: np.ndarray
    nps_mean: np.ndarray
    acc: np.ndarray  # (n, 3) potential account indices by rank, -1 when none

    @property
    def n(self) -> int:
        return len(self.reg_day)


@dataclass
class Accounts:
    """Per potential account arrays (primary account of person i has index i)."""
    person: np.ndarray
    rank: np.ndarray
    platform: np.ndarray
    link: np.ndarray  # how this account links to the previous one of its person
    gap: np.ndarray  # days after the previous account before this one may be created
    late_days: np.ndarray  # 0, or 1..3: users row lands that many days after registration
    user_id: pa.Array
    phone: pa.Array
    device_id: pa.Array
    union_id: pa.Array

    @property
    def n(self) -> int:
        return len(self.person)


def _hex_ids(values: np.ndarray, nbytes: int) -> np.ndarray:
    """Lower-case hex of unsigned ints (big endian, ``nbytes`` bytes) as an (n, 2*nbytes) uint8 array."""
    b = values.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - nbytes:]
    out = np.empty((len(values), nbytes * 2), dtype=np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    return out


def _scramble32(values: np.ndarray, salt: int) -> np.ndarray:
    """A bijection on 32-bit ints (multiply, xor-shift, multiply): distinct inputs give distinct ids."""
    m = np.uint64(2**32 - 1)
    x = (values.astype(np.uint64) * np.uint64(2654435761) + np.uint64(salt)) & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(2246822519)) & m
    x ^= x >> np.uint64(13)
    return x


def _to_str(chars: np.ndarray) -> pa.Array:
    n, w = chars.shape
    return pa.array(np.ascontiguousarray(chars).view(f"S{w}").ravel()).cast(pa.string())


def _uuid_like(rng: np.random.Generator, n: int) -> pa.Array:
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).astype(np.uint64)
    h = np.concatenate([_hex_ids(raw[:, 0], 8), _hex_ids(raw[:, 1], 8)], axis=1)
    h[:, 12] = ord("4")  # version nibble
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    return _to_str(np.concatenate([h[:, :8], dash, h[:, 8:12], dash, h[:, 12:16], dash, h[:, 16:20], dash, h[:, 20:]], 1))


def _union_ids(rng: np.random.Generator, n: int) -> pa.Array:
    chars = _B64[rng.integers(0, 64, size=(n, 27))]
    return _to_str(np.concatenate([np.full((n, 1), ord("o"), dtype=np.uint8), chars], 1))


def _digits(key: np.ndarray, width: int, mult: int, salt: int) -> pa.Array:
    """Distinct zero-padded digit strings for distinct keys (< 10**width): a bijection mod 10**width."""
    mod = 10 ** width
    v = (key.astype(np.int64) % mod * mult + salt) % mod
    return pc.utf8_lpad(pa.array(v).cast(pa.string()), width, "0")


def _phones(rng: np.random.Generator, key: np.ndarray, region: np.ndarray, salt: int) -> pa.Array:
    """E.164 mobile numbers: +86 1[3-9]x (CN), +33 6/7 (EU, FR) / +49 15-17 (EU, DE), +1 (US), +65 (OTHER)."""
    n = len(key)
    cn_second = np.array(list("3456789"))[rng.integers(0, 7, n)]
    de = rng.random(n) < 0.5
    eu_pre = np.where(de, np.array(["+4915", "+4916", "+4917"])[rng.integers(0, 3, n)],
                      np.array(["+336", "+337"])[rng.integers(0, 2, n)])
    us_pre = np.char.add("+1", (rng.integers(2, 10, n) * 100 + rng.integers(0, 100, n)).astype(str))
    prefix = np.select([region == 0, region == 1, region == 2],
                       [np.char.add("+861", cn_second), eu_pre, np.char.add(us_pre, rng.integers(2, 10, n).astype(str))],
                       default=np.array(["+658", "+659"])[rng.integers(0, 2, n)])
    width = np.select([region == 0, region == 1, region == 2], [9, 8, 6], default=7)
    out = pa.array(prefix.astype(str))
    parts = {w: _digits(key, w, 387420489, salt) for w in (6, 7, 8, 9)}
    body = parts[9]
    for w in (6, 7, 8):
        body = pc.if_else(pa.array(width == w), parts[w], body)
    # DE numbers have 8 digits after the 3-digit mobile prefix, FR 8 after 6/7; both fine as E.164 lengths
    return pc.binary_join_element_wise(out, body, "")


def _choice(rng: np.random.Generator, probs, n: int) -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum()).astype(np.int16)


def _zipf_weights(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def sizes(n_persons: int) -> dict[str, int]:
    """Catalogue sizes that scale with the population."""
    return {
        "kols": max(30, n_persons // 250),
        "communities": max(15, n_persons // 400),
        "products": max(500, min(20000, n_persons // 10)),
        "contents": max(2000, min(200000, n_persons // 2)),
    }


def build_persons(rng: np.random.Generator, n: int, cal: Calendar, gs: GenSettings) -> Persons:
    days = cal.days
    sz = sizes(n)
    w = cal.acquisition_factor / cal.acquisition_factor.sum()
    reg = rng.choice(days, size=n, p=w).astype(np.int32)
    channel = _choice(rng, gs.channel_mix, n)
    social = (channel == CH["referral"]) | ((channel == CH["community"]) & (rng.random(n) < gs.share_link_share_of_community))
    if days > gs.first_social_day:
        late_w = w[gs.first_social_day:] / w[gs.first_social_day:].sum()
        move = social & (reg < gs.first_social_day)
        reg[move] = gs.first_social_day + rng.choice(days - gs.first_social_day, size=int(move.sum()), p=late_w)
    else:  # too short a window for social acquisition: those persons become organic
        channel[social] = CH["organic"]
        social[:] = False
    via_share = social & (channel == CH["community"])
    order = np.argsort(reg, kind="stable")
    reg, channel, via_share = reg[order], channel[order], via_share[order]

    cp = np.asarray(gs.channel_platform)
    u = rng.random(n)
    platform = (u[:, None] > np.cumsum(cp[channel], axis=1)).sum(1).clip(0, 3).astype(np.int8)
    region = _choice(rng, gs.region_mix, n).astype(np.int8)
    city_tier = (_choice(rng, gs.city_tier_mix, n) + 1).astype(np.int8)
    age_band = _choice(rng, gs.age_mix, n).astype(np.int8)
    consent_a = rng.random(n) < np.where(region == 1, gs.consent_analytics - 0.08, gs.consent_analytics)
    consent_m = rng.random(n) < np.where(consent_a, gs.consent_marketing_given_analytics,
                                         gs.consent_marketing_without_analytics)

    kol_w = _zipf_weights(sz["kols"], gs.kol_zipf)
    fav_kol = rng.choice(sz["kols"], size=n, p=kol_w).astype(np.int32)
    kol = np.where(np.isin(channel, [CH["kol_content"], CH["live_stream"]]), fav_kol, -1).astype(np.int32)
    social_pl = np.isin(platform, [PL["private"], PL["group_buy"]]) | (channel == CH["community"])
    member = rng.random(n) < np.where(social_pl, gs.community_member_social, gs.community_member_other)
    comm_w = _zipf_weights(sz["communities"], 0.8)
    community = np.where(member, rng.choice(sz["communities"], size=n, p=comm_w), -1).astype(np.int32)
    join_gap = np.where(channel == CH["community"], 0, rng.geometric(0.15, n) - 1).astype(np.int16)
    fav_cat = _choice(rng, CATEGORY_WEIGHTS, n).astype(np.int8)

    # latent behaviour (BG/NBD-like): visit prob, dropout after each active day, gamma purchase rate
    tier_drop = 1.0 + 0.06 * (city_tier - 3)  # lower-tier cities churn a bit more
    age_drop = np.where(age_band <= 1, 1.1, np.where(age_band >= 4, 1.05, 0.95))
    drop = (rng.beta(*gs.drop_beta, n) * np.asarray(gs.channel_drop)[channel] * tier_drop * age_drop).clip(0.002, 0.95)
    act = rng.beta(*gs.act_beta, n)
    lam = rng.gamma(gs.lam_gamma_shape, gs.lam_mean / gs.lam_gamma_shape, n) * np.asarray(gs.channel_lam)[channel]
    tier_spend = 1.0 + 0.08 * (3 - city_tier)
    spend = (gs.spend_median_cny * np.exp(gs.spend_sigma * rng.standard_normal(n))
             * np.asarray(gs.channel_spend)[channel] * tier_spend)
    sharer = rng.random(n) < gs.sharer_share
    share_rate = np.where(sharer, rng.gamma(2.0, gs.share_rate_sharer / 2.0, n), rng.gamma(1.0, gs.share_rate_other, n))
    influence = np.exp(1.2 * rng.standard_normal(n))
    invite_rate = rng.gamma(0.5, gs.invite_rate_mean / 0.5, n) * np.where(sharer, 3.0, 0.6)
    assist_rate = np.where(platform == PL["group_buy"], gs.assist_rate_group_buy, gs.assist_rate_other) * rng.gamma(1.0, 1.0, n)
    ugc_rate = rng.gamma(0.7, gs.ugc_rate / 0.7, n)
    browse_mu = gs.browse_mean * (0.4 + 1.2 * act)
    nps_mean = 8.6 - 9.0 * drop + 0.8 * rng.standard_normal(n)
    return Persons(
        reg_day=reg, channel=channel.astype(np.int8), platform=platform, region=region, city_tier=city_tier,
        age_band=age_band, consent_a=consent_a, consent_m=consent_m, kol=kol, fav_kol=fav_kol,
        community=community, join_gap=join_gap, fav_cat=fav_cat, via_share=via_share,
        tourist=rng.random(n) < gs.tourist_share, act=act, drop=drop, lam=lam, spend=spend,
        share_rate=share_rate, influence=influence, invite_rate=invite_rate, assist_rate=assist_rate,
        ugc_rate=ugc_rate, browse_mu=browse_mu, nps_mean=nps_mean, acc=np.full((n, 3), -1, dtype=np.int64),
    )


def build_accounts(rng: np.random.Generator, persons: Persons, gs: GenSettings, salt: int) -> Accounts:
    n = persons.n
    multi = rng.random(n) < gs.multi_account_share
    three = multi & (rng.random(n) < gs.three_account_share)
    p2 = np.flatnonzero(multi)
    p3 = np.flatnonzero(three)
    n_acc = n + len(p2) + len(p3)
    person = np.concatenate([np.arange(n), p2, p3])
    rank = np.concatenate([np.zeros(n, np.int8), np.ones(len(p2), np.int8), np.full(len(p3), 2, np.int8)])
    acc_index = np.arange(n_acc)
    persons.acc[:, 0] = np.arange(n)
    persons.acc[p2, 1] = acc_index[n:n + len(p2)]
    persons.acc[p3, 2] = acc_index[n + len(p2):]

    # platforms: secondary accounts on other platforms than the person's earlier accounts
    platform = np.empty(n_acc, np.int8)
    platform[:n] = persons.platform
    shift = rng.permuted(np.tile(np.array([1, 2, 3]), (len(p2), 1)), axis=1)
    platform[n:n + len(p2)] = (persons.platform[p2] + shift[:, 0]) % 4
    pos3 = np.searchsorted(p2, p3)
    platform[n + len(p2):] = (persons.platform[p3] + shift[pos3, 1]) % 4

    # links: 2-account persons by phone or union_id; 3-account persons as a chain A-B phone, B-C union_id
    link = np.zeros(n_acc, np.int8)
    link[n:n + len(p2)] = np.where(three[p2] | (rng.random(len(p2)) < gs.phone_link_share), LINK_PHONE, LINK_UNION)
    link[n + len(p2):] = LINK_UNION
    phone_key = acc_index.copy()
    union_key = np.where(rng.random(n_acc) < gs.union_id_share, acc_index, -1)
    union_key[persons.region[person] != 0] = -1  # union ids are a WeChat (CN) thing
    prev = np.where(rank == 1, persons.acc[person, 0], np.where(rank == 2, persons.acc[person, 1], -1))
    by_phone = link == LINK_PHONE
    phone_key[by_phone] = phone_key[prev[by_phone]]
    by_union = np.flatnonzero(link == LINK_UNION)
    # the shared union id is the previous account's; make sure it exists and does not also reach further back
    union_key[prev[by_union]] = prev[by_union]
    union_key[by_union] = prev[by_union]
    chain_a = persons.acc[p3, 0]  # in a chain A's union id must differ from B's (A-C only via B)
    union_key[chain_a] = np.where(union_key[chain_a] == persons.acc[p3, 1], -1, union_key[chain_a])
    # a phone-linked pair must not accidentally also share a union id (keeps the link type honest)
    pair = np.flatnonzero(by_phone & (rank == 1) & ~three[person])
    union_key[pair] = np.where(union_key[pair] == union_key[prev[pair]], -1, union_key[pair])

    device_key = acc_index.copy()
    same_dev = (rank > 0) & (rng.random(n_acc) < 0.5)
    device_key[same_dev] = prev[same_dev]
    shared = np.flatnonzero(rng.random(n_acc) < gs.shared_device_share)
    donor = rng.integers(0, n_acc, len(shared))
    ok = person[donor] != person[shared]
    device_key[shared[ok]] = device_key[donor[ok]]

    gap = np.where(rank > 0, rng.geometric(1.0 / gs.second_account_gap_days, n_acc), 0).astype(np.int32)
    late = np.where(rng.random(n_acc) < gs.late_user_share, rng.integers(1, 4, n_acc), 0).astype(np.int8)

    scrambled = _scramble32(acc_index, salt)
    prefix = np.asarray(PLATFORM_PREFIX)[platform]
    user_id = pc.binary_join_element_wise(pa.array(np.char.add(prefix, "_")), _to_str(_hex_ids(scrambled, 4)), "")
    # one number per key (the owning account), shared by the accounts linked through it
    phones = _phones(rng, acc_index, persons.region[person], salt % 10**6).take(pa.array(phone_key))
    dev_str = _uuid_like(rng, n_acc).take(pa.array(device_key))
    union_str = _union_ids(rng, n_acc).take(pa.array(np.where(union_key < 0, 0, union_key), mask=union_key < 0))
    return Accounts(person=person, rank=rank, platform=platform, link=link, gap=gap, late_days=late,
                    user_id=user_id, phone=phones, device_id=dev_str, union_id=union_str)
