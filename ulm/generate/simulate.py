"""Day-major simulation: one vectorized step per business day over all persons alive on that day.

Each step decides who is active and who buys (gamma purchase rates, promotion/weekly factors, new-user
first-order boost), lets active persons drop out for good with their person-specific probability
(BG/NBD-like), builds the day's sessions (events), orders, shares / share-link arrivals, invites,
assists, community activity, NPS responses, erasure requests, new accounts and marketing spend, and
returns them as contract-typed Arrow tables. Memory is bounded by one day of rows plus per-person state.

Newcomers who arrive through someone else's action today (share-link or invite) are simulated in a
second pass ("phase B") whose sessions start after that action, so their ``registered_at``, first event
and ``accepted_at`` are ordered correctly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ulm.core.contract import AGE_BANDS, CHANNELS, EVENT_TYPES, ORDER_STATUSES, PLATFORMS, REGIONS, SCENARIOS

from . import tables as T
from .calendar import Calendar
from .population import CH, Accounts, Persons, sizes
from .settings import (
    BROWSE_MIX,
    BROWSE_TYPES,
    CATEGORIES,
    CATEGORY_PRICE,
    CATEGORY_WEIGHTS,
    COUPON_VALUES_CNY,
    HOURLY_WEIGHTS,
    SCENARIO_MIX,
    GenSettings,
)

ET = {e: i for i, e in enumerate(EVENT_TYPES)}
SC = {s: i for i, s in enumerate(SCENARIOS)}
ST = {s: i for i, s in enumerate(ORDER_STATUSES)}
BROWSE_CODES = np.array([ET[b] for b in BROWSE_TYPES], dtype=np.int8)
LAST_SEC = 86399
# block order of a session: first event, click, join, browse, community, share, invite, assist, funnel
B_FIRST, B_CLICK, B_JOIN, B_BROWSE, B_COMM, B_SHARE, B_INVITE, B_ASSIST, B_FUNNEL = range(9)


class Vocab:
    """String vocabularies (ids and JSON properties) indexed by small ints."""

    def __init__(self, n_persons: int) -> None:
        sz = sizes(n_persons)
        self.n_kols, self.n_comms = sz["kols"], sz["communities"]
        self.n_products, self.n_contents = sz["products"], sz["contents"]
        self.per_cat = self.n_products // len(CATEGORIES)
        self.kol = T.vocab(f"kol_{i:04d}" for i in range(self.n_kols))
        self.community = T.vocab(f"grp_{i:04d}" for i in range(self.n_comms))
        self.product = T.vocab(f"p{i:06d}" for i in range(self.n_products))
        self.content = T.vocab(f"cnt{i:07d}" for i in range(self.n_contents))
        self.coupon = T.vocab(f"CP{i:03d}" for i in range(len(COUPON_VALUES_CNY)))
        self.coupon_cents = np.asarray(COUPON_VALUES_CNY, dtype=np.int64) * 100
        props: list[str] = []
        self.props_at: dict[str, tuple[int, int]] = {}

        def add(name: str, items: list[str]) -> None:
            self.props_at[name] = (len(props), len(items))
            props.extend(items)

        add("app_open", [f'{{"source":"{s}","os":"{o}"}}' for s in ("icon", "push", "share_link", "ad")
                         for o in ("ios", "android")])
        add("view", [f'{{"source":"{s}"}}' for s in ("feed", "search", "recommend", "profile")])
        add("search", [f'{{"query_category":"{c}"}}' for c in CATEGORIES])
        add("coupon", [f'{{"coupon_id":"CP{i:03d}","value":{v}}}' for i, v in enumerate(COUPON_VALUES_CNY)])
        add("live", [f'{{"room_id":"room_{i:04d}"}}' for i in range(self.n_kols)])
        add("share", [f'{{"target":"{t}","via":"{v}"}}' for t in ("content", "product")
                      for v in ("wechat", "moments", "qq", "weibo")])
        add("via_share", ['{"source":"share_link"}'])
        add("community", [f'{{"entry":"{e}"}}' for e in ("group_chat", "mini_program", "official_account")])
        add("ugc", [f'{{"media":"{m}"}}' for m in ("image", "video", "text")])
        add("invite", [f'{{"method":"{m}"}}' for m in ("link", "poster", "qr_code")])
        add("assist", ['{"campaign":"bargain"}', '{"campaign":"group_unlock"}'])
        add("cart", ['{"qty":1}', '{"qty":2}', '{"qty":3}'])
        self.props = T.vocab(props)

    def prop(self, name: str, rng: np.random.Generator, n: int, which: np.ndarray | None = None) -> np.ndarray:
        off, cnt = self.props_at[name]
        return off + (which if which is not None else rng.integers(0, cnt, n))


@dataclass
class Events:
    """A day's events as parallel arrays, before conversion to Arrow."""
    pos: np.ndarray  # index into the batch of persons that produced them
    etype: np.ndarray
    block: np.ndarray
    product: np.ndarray
    category: np.ndarray
    content: np.ndarray
    kol: np.ndarray
    community: np.ndarray
    share: np.ndarray
    props: np.ndarray
    local: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @staticmethod
    def empty_like(n: int) -> dict[str, np.ndarray]:
        neg = np.full(n, -1, dtype=np.int64)
        return {k: neg.copy() for k in ("product", "category", "content", "kol", "community", "share", "props")}

    def subset(self, keep: np.ndarray) -> "Events":
        return Events(**{k: getattr(self, k)[keep] for k in self.__dataclass_fields__})


@dataclass
class Batch:
    """Active persons of one phase with their account, session start and purchase flag."""
    person: np.ndarray
    acc: np.ndarray
    start: np.ndarray
    buy: np.ndarray
    joining: np.ndarray
    clicks: np.ndarray
    extra_invites: np.ndarray
    allow_assist: bool


class Simulator:
    def __init__(self, persons: Persons, accounts: Accounts, cal: Calendar, gs: GenSettings,
                 rng: np.random.Generator) -> None:
        self.p, self.a, self.cal, self.gs, self.rng = persons, accounts, cal, gs, rng
        n = persons.n
        self.v = Vocab(n)
        self.alive = np.zeros(n, dtype=bool)
        self.bought = np.zeros(n, dtype=bool)
        self.joined = np.zeros(n, dtype=bool)
        self.n_created = np.zeros(n, dtype=np.int8)
        self.n_planned = (persons.acc >= 0).sum(1).astype(np.int8)
        self.next_acc_day = np.full(n, np.iinfo(np.int32).max, dtype=np.int64)
        self.dead_day = np.full(n, -1, dtype=np.int64)
        self.last_active = np.full(n, -1, dtype=np.int64)
        self.acc_reg_sec = np.full(accounts.n, -1, dtype=np.int64)  # epoch seconds once created
        self.seq = {k: 0 for k in ("event", "order", "share", "invite", "session", "nps", "erasure")}
        self.pending_users: dict[int, list[pa.Table]] = {}
        self.hour_cdf = np.cumsum(HOURLY_WEIGHTS)
        self.cat_cdf = np.cumsum(CATEGORY_WEIGHTS)
        self.browse_cum = np.cumsum(np.asarray(BROWSE_MIX), axis=1)
        self.scen_cum = np.cumsum(np.asarray(SCENARIO_MIX), axis=1)
        self.kol_cdf = np.cumsum(1.0 / np.arange(1, self.v.n_kols + 1) ** gs.kol_zipf)
        self.reg_bounds = np.searchsorted(persons.reg_day, np.arange(cal.days + 1))
        self.user_vocab = {"platform": T.vocab(PLATFORMS), "channel": T.vocab(CHANNELS),
                           "age": T.vocab(AGE_BANDS), "region": T.vocab(REGIONS)}
        self.etype_vocab, self.cat_vocab = T.vocab(EVENT_TYPES), T.vocab(CATEGORIES)
        self.status_vocab, self.scen_vocab = T.vocab(ORDER_STATUSES), T.vocab(SCENARIOS)

    # ------------------------------------------------------------------ helpers
    def _next(self, name: str, n: int) -> np.ndarray:
        start = self.seq[name]
        self.seq[name] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def _draw(self, cdf: np.ndarray, n: int) -> np.ndarray:
        """``n`` draws from a discrete distribution given by its cumulative weights (fast rng.choice)."""
        return np.searchsorted(cdf, self.rng.random(n) * cdf[-1], side="right").clip(0, len(cdf) - 1)

    def _local_starts(self, n: int) -> np.ndarray:
        hour = self._draw(self.hour_cdf, n)
        return hour * 3600 + self.rng.integers(0, 3600, n)

    def _products(self, cat: np.ndarray) -> np.ndarray:
        rank = np.minimum(self.rng.geometric(0.02, len(cat)) - 1, self.v.per_cat - 1)
        return cat.astype(np.int64) * self.v.per_cat + rank

    def _categories(self, persons: np.ndarray) -> np.ndarray:
        fav = self.rng.random(len(persons)) < 0.7
        other = self._draw(self.cat_cdf, len(persons))
        return np.where(fav, self.p.fav_cat[persons], other).astype(np.int64)

    def _kols(self, persons: np.ndarray, fav_share: float) -> np.ndarray:
        fav = self.rng.random(len(persons)) < fav_share
        return np.where(fav, self.p.fav_kol[persons], self._draw(self.kol_cdf, len(persons)))

    def _contents(self, kol: np.ndarray) -> np.ndarray:
        per_kol = max(1, self.v.n_contents // self.v.n_kols)
        return kol + self.v.n_kols * self.rng.integers(0, per_kol, len(kol))

    # ------------------------------------------------------------------ day step
    def step(self, t: int) -> dict[str, pa.Table]:
        p, gs, rng, cal = self.p, self.gs, self.rng, self.cal
        lo, hi = self.reg_bounds[t], self.reg_bounds[t + 1]
        self.alive[lo:hi] = True
        self.next_acc_day[lo:hi] = t + self.a.gap[np.maximum(p.acc[lo:hi, 1], 0)]
        cand = np.flatnonzero(self.alive[:hi])
        age = t - p.reg_day[cand]
        boost = np.where(~self.bought[cand] & (age < 7),
                         1.0 + gs.first_order_boost * np.exp(-age / gs.first_order_decay_days), 1.0)
        buy = rng.random(len(cand)) < 1.0 - np.exp(-p.lam[cand] * cal.purchase_factor[t] * boost)
        novelty = np.where(age < gs.novelty_days, gs.novelty_boost, 1.0)
        visit = rng.random(len(cand)) < np.minimum(p.act[cand] * cal.activity_factor[t] * novelty, 0.97)
        active = buy | visit | (age == 0)
        persons, buy, age = cand[active], buy[active], age[active]
        self.bought[persons[buy]] = True
        self.last_active[persons] = t
        drop_p = np.where(p.tourist[persons] & (age == 0), gs.tourist_drop, p.drop[persons])
        dies = rng.random(len(persons)) < drop_p
        erase = rng.random(len(persons)) < gs.erasure_prob
        gone = persons[dies | erase]
        self.alive[gone] = False
        self.dead_day[gone] = t

        new = age == 0
        social_new = new & (p.via_share[persons] | (p.channel[persons] == CH["referral"]))
        acc, created = self._accounts_of_day(persons, new, t)
        starts = self._local_starts(len(persons))
        joining = (p.community[persons] >= 0) & ~self.joined[persons] & (age >= p.join_gap[persons])
        self.joined[persons[joining]] = True
        clicks = ~new & (rng.random(len(persons)) < gs.click_prob)

        a_idx, b_idx = np.flatnonzero(~social_new), np.flatnonzero(social_new)
        # referral newcomers get an inviter among today's phase-A persons registered before today
        ref_b = b_idx[p.channel[persons[b_idx]] == CH["referral"]]
        inviter_pos = np.full(len(ref_b), -1, dtype=np.int64)
        cands = np.flatnonzero(p.reg_day[persons[a_idx]] < t)
        extra = np.zeros(len(a_idx), dtype=np.int64)
        if len(ref_b) and len(cands):
            w = p.invite_rate[persons[a_idx[cands]]] + 0.01
            inviter_pos = cands[rng.choice(len(cands), size=len(ref_b), p=w / w.sum())]
            extra = np.bincount(inviter_pos, minlength=len(a_idx))
        batch_a = Batch(persons[a_idx], acc[a_idx], starts[a_idx], buy[a_idx], joining[a_idx], clicks[a_idx],
                        extra, True)
        ev_a, orders_a = self._session(batch_a, t)
        self._assign_share_refs(ev_a, batch_a, orders_a)

        # phase B: arrivals through a share link or an accepted invite, after the action that brought them
        anchor = np.zeros(len(b_idx), dtype=np.int64)
        ref_user = np.full(len(b_idx), -1, dtype=np.int64)
        share_of = np.full(len(b_idx), -1, dtype=np.int64)
        shares = self._eligible_shares(ev_a)
        via = p.via_share[persons[b_idx]]
        n_via = int(via.sum())
        if n_via and len(shares):
            sidx = shares[rng.choice(len(shares), size=n_via, p=self._share_weights(ev_a, batch_a, shares))]
            anchor[via] = ev_a.local[sidx]
            ref_user[via] = batch_a.acc[ev_a.pos[sidx]]
            share_of[via] = sidx
        invite_match = np.full(len(ref_b), -1, dtype=np.int64)
        if len(ref_b):
            is_ref = ~via
            ok = inviter_pos >= 0
            invite_match[ok] = self._match_invites(ev_a, inviter_pos[ok])
            anchor_ref = np.zeros(len(ref_b), dtype=np.int64)
            anchor_ref[ok] = ev_a.local[invite_match[ok]]
            ru = np.full(len(ref_b), -1, dtype=np.int64)
            ru[ok] = batch_a.acc[inviter_pos[ok]]
            anchor[is_ref], ref_user[is_ref] = anchor_ref, ru
        linked = ref_user >= 0
        # arrivals without a source today fall back to a plain organic registration
        self._fallback_organic(persons[b_idx[~linked]])
        reg_local = np.minimum(anchor + rng.integers(30, 1800, len(b_idx)), LAST_SEC)
        start_b = np.where(linked, np.minimum(reg_local + rng.integers(5, 120, len(b_idx)), LAST_SEC), starts[b_idx])
        reg_local = np.where(linked, reg_local, np.maximum(start_b - rng.integers(5, 300, len(b_idx)), 0))
        batch_b = Batch(persons[b_idx], acc[b_idx], start_b, buy[b_idx], joining[b_idx],
                        np.zeros(len(b_idx), bool), np.zeros(len(b_idx), np.int64), False)
        ev_b, orders_b = self._session(batch_b, t)
        self._first_event_via_share(ev_b, ev_a, share_of)

        # users rows (phase A newcomers / new secondary accounts: registered just before their session)
        reg_a = np.maximum(starts[a_idx] - rng.integers(5, 300, len(a_idx)), 0)
        reg_sec = np.concatenate([reg_a, reg_local])
        order_ab = np.concatenate([a_idx, b_idx])
        referrer = np.concatenate([np.full(len(a_idx), -1, np.int64), ref_user])
        self._emit_users(t, acc[order_ab], created[order_ab], reg_sec, referrer)

        out = {
            "events": self._events_table(t, [(ev_a, batch_a), (ev_b, batch_b)]),
            "orders": self._orders_table(t, [(orders_a, batch_a), (orders_b, batch_b)]),
            "invites": self._invites_table(t, ev_a, batch_a, ev_b, batch_b, invite_match, reg_local[~via]
                                           if len(ref_b) else np.zeros(0, np.int64), acc[ref_b]),
            "nps_responses": self._nps_table(t, [(ev_a, batch_a), (ev_b, batch_b)]),
            "erasure_requests": self._erasure_table(t, persons, acc, erase, [(ev_a, batch_a), (ev_b, batch_b)]),
            "marketing_spend": self._spend_table(t, lo, hi),
        }
        out["users"] = self._users_for_day(t)
        return out

    # ------------------------------------------------------------------ accounts
    def _accounts_of_day(self, persons: np.ndarray, new: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Account each active person uses today, and whether that account is created today."""
        p, rng = self.p, self.rng
        n_cr = self.n_created[persons]
        create = new | ((n_cr < self.n_planned[persons]) & (t >= self.next_acc_day[persons]))
        rank = np.where(create, np.where(new, 0, n_cr), (rng.random(len(persons)) * np.maximum(n_cr, 1)).astype(np.int64))
        acc = p.acc[persons, rank]
        grown = persons[create]
        self.n_created[grown] += 1
        nxt = np.minimum(self.n_created[grown], 2)
        nxt_acc = p.acc[grown, nxt]
        self.next_acc_day[grown] = np.where(nxt_acc >= 0, t + self.a.gap[np.maximum(nxt_acc, 0)], np.iinfo(np.int32).max)
        return acc, create

    def _fallback_organic(self, persons: np.ndarray) -> None:
        self.p.channel[persons] = CH["organic"]
        self.p.via_share[persons] = False

    # ------------------------------------------------------------------ sessions
    def _session(self, b: Batch, t: int) -> tuple[Events, dict[str, np.ndarray]]:
        """Events of each person's session (ordered blocks) and the orders they place."""
        p, gs, rng, v = self.p, self.gs, self.rng, self.v
        n = len(b.person)
        plat = self.a.platform[b.acc]
        in_comm = self.joined[b.person] & (rng.random(n) < gs.community_day_prob)
        counts = {
            B_FIRST: np.ones(n, np.int64),
            B_CLICK: b.clicks.astype(np.int64),
            B_JOIN: b.joining.astype(np.int64),
            B_BROWSE: rng.poisson(p.browse_mu[b.person] * self.cal.activity_factor[t]),
            B_SHARE: rng.poisson(p.share_rate[b.person]),
            B_INVITE: rng.poisson(p.invite_rate[b.person]) + b.extra_invites,
            B_ASSIST: np.minimum(rng.poisson(p.assist_rate[b.person]), 3) if b.allow_assist else np.zeros(n, np.int64),
        }
        opens = np.where(in_comm, 1 + rng.poisson(0.5, n), 0)
        checks = (in_comm & (rng.random(n) < gs.check_in_prob)).astype(np.int64)
        ugc = np.where(in_comm, rng.poisson(p.ugc_rate[b.person]), 0)
        counts[B_COMM] = opens + checks + ugc
        n_orders = np.where(b.buy, 1 + (rng.random(n) < gs.second_order_prob), 0)
        counts[B_FUNNEL] = 2 * n_orders

        pos = np.concatenate([np.repeat(np.arange(n), counts[k]) for k in range(9)])
        block = np.concatenate([np.full(int(counts[k].sum()), k, np.int8) for k in range(9)])
        order = np.lexsort((block, pos))
        pos, block = pos[order], block[order]
        m = len(pos)
        cols = Events.empty_like(m)
        etype = np.zeros(m, np.int8)
        person = b.person[pos]

        def fill_content(mask: np.ndarray, fav_share: float = 0.5) -> None:
            kol = self._kols(person[mask], fav_share)
            cols["kol"][mask] = kol
            cols["content"][mask] = self._contents(kol)

        def fill_product(mask: np.ndarray) -> None:
            cat = self._categories(person[mask])
            cols["category"][mask] = cat
            cols["product"][mask] = self._products(cat)

        sel = block == B_FIRST
        etype[sel] = ET["app_open"]
        cols["props"][sel] = v.prop("app_open", rng, int(sel.sum()))
        sel = block == B_CLICK  # target, share id and time are set once today's shares are known
        etype[sel] = ET["content_view"]
        cols["props"][sel] = v.prop("via_share", rng, int(sel.sum()))
        sel = block == B_JOIN
        etype[sel] = ET["community_join"]
        sel = block == B_BROWSE
        u = rng.random(int(sel.sum()))
        bt = BROWSE_CODES[(u[:, None] > self.browse_cum[plat[pos[sel]]]).sum(1).clip(0, len(BROWSE_TYPES) - 1)]
        etype[sel] = bt
        self._fill_browse(sel, bt, person, cols, fill_content, fill_product)
        sel = block == B_COMM
        # community block: opens first, then check-in, then UGC posts
        idx = np.flatnonzero(sel)
        first = np.searchsorted(pos[idx], pos[idx], side="left")
        k = np.arange(len(idx)) - first
        o, c = opens[pos[idx]], checks[pos[idx]]
        etype[idx] = np.where(k < o, ET["community_open"], np.where(k < o + c, ET["check_in"], ET["ugc_post"]))
        cols["props"][idx] = np.where(etype[idx] == ET["ugc_post"], v.prop("ugc", rng, len(idx)),
                                      v.prop("community", rng, len(idx)))
        comm = (block == B_COMM) | (block == B_JOIN)
        cols["community"][comm] = p.community[person[comm]]
        sel = block == B_SHARE
        etype[sel] = ET["share"]
        cols["share"][sel] = self._next("share", int(sel.sum()))
        is_content = rng.random(int(sel.sum())) < 0.6
        sidx = np.flatnonzero(sel)
        mask = np.zeros(m, bool)
        mask[sidx[is_content]] = True
        fill_content(mask, 0.7)
        mask[:] = False
        mask[sidx[~is_content]] = True
        fill_product(mask)
        cols["props"][sidx] = v.prop("share", rng, len(sidx), np.where(is_content, 0, 4) + rng.integers(0, 4, len(sidx)))
        sel = block == B_INVITE
        etype[sel] = ET["invite_sent"]
        cols["props"][sel] = v.prop("invite", rng, int(sel.sum()))
        sel = block == B_ASSIST
        etype[sel] = ET["assist"]
        cols["props"][sel] = v.prop("assist", rng, int(sel.sum()))

        # purchase funnel: product_view + add_to_cart per order, on the ordered product
        fsel = np.flatnonzero(block == B_FUNNEL)
        o_pos = pos[fsel[0::2]]
        o_cat = self._categories(b.person[o_pos])
        o_prod = self._products(o_cat)
        etype[fsel[0::2]] = ET["product_view"]
        etype[fsel[1::2]] = ET["add_to_cart"]
        for j in (0, 1):
            cols["category"][fsel[j::2]] = o_cat
            cols["product"][fsel[j::2]] = o_prod
        cols["props"][fsel[0::2]] = v.prop("view", rng, len(o_pos))
        cols["props"][fsel[1::2]] = v.prop("cart", rng, len(o_pos))

        # timestamps: session start + cumulative gaps, clipped to the business day
        gaps = rng.exponential(45.0, m).astype(np.int64) + 1
        cs = np.cumsum(gaps)
        seg_first = np.searchsorted(pos, pos, side="left")
        local = np.minimum(b.start[pos] + cs - cs[seg_first], LAST_SEC)
        ev = Events(pos=pos, etype=etype, block=block, local=local, **cols)
        order_local = np.minimum(local[fsel[1::2]] + rng.integers(10, 300, len(o_pos)), LAST_SEC)
        orders = {"pos": o_pos, "category": o_cat, "product": o_prod, "local": order_local,
                  "share": np.full(len(o_pos), -1, np.int64)}
        return ev, orders

    def _fill_browse(self, sel, bt, person, cols, fill_content, fill_product) -> None:
        idx = np.flatnonzero(sel)
        content_like = np.isin(bt, [ET["content_view"], ET["like"], ET["comment"], ET["favorite"]])
        mask = np.zeros(len(sel), bool)
        mask[idx[content_like]] = True
        fill_content(mask)
        mask[:] = False
        mask[idx[bt == ET["product_view"]]] = True
        fill_product(mask)
        cols["props"][mask] = self.v.prop("view", self.rng, int(mask.sum()))
        for et, fav in ((ET["follow"], 0.6), (ET["live_enter"], 0.6)):
            j = idx[bt == et]
            cols["kol"][j] = self._kols(person[j], fav)
        j = idx[bt == ET["live_enter"]]
        cols["props"][j] = self.v.prop("live", self.rng, len(j), cols["kol"][j])
        j = idx[bt == ET["search"]]
        cat = self._categories(person[j])
        cols["category"][j] = cat
        cols["props"][j] = self.v.prop("search", self.rng, len(j), cat)
        j = idx[bt == ET["coupon_claim"]]
        cols["props"][j] = self.v.prop("coupon", self.rng, len(j), self.rng.integers(0, len(COUPON_VALUES_CNY), len(j)))

    # ------------------------------------------------------------------ social links
    def _eligible_shares(self, ev: Events) -> np.ndarray:
        """Share events early enough in the day to be followed by a click the same day."""
        return np.flatnonzero((ev.etype == ET["share"]) & (ev.local <= 85000))

    def _share_weights(self, ev: Events, b: Batch, shares: np.ndarray) -> np.ndarray:
        w = self.p.influence[b.person[ev.pos[shares]]]
        return w / w.sum()

    def _assign_share_refs(self, ev: Events, b: Batch, orders: dict[str, np.ndarray]) -> None:
        """Clicks and assists point at a share by another person made earlier today; copy its target."""
        rng = self.rng
        shares = self._eligible_shares(ev)
        refs = np.flatnonzero((ev.block == B_CLICK) | (ev.block == B_ASSIST))
        if len(refs) == 0:
            return
        if len(shares) == 0:
            keep = np.ones(len(ev.pos), bool)
            keep[refs] = False
            self._drop_events(ev, keep)
            return
        pick = rng.choice(len(shares), size=len(refs), p=self._share_weights(ev, b, shares))
        same = b.person[ev.pos[shares[pick]]] == b.person[ev.pos[refs]]
        pick = np.where(same, (pick + 1) % len(shares), pick)
        src = shares[pick]
        valid = b.person[ev.pos[src]] != b.person[ev.pos[refs]]
        clicks = refs[ev.block[refs] == B_CLICK]
        csrc = src[ev.block[refs] == B_CLICK]
        self._copy_target(ev, clicks, ev, csrc)
        ev.share[refs] = np.where(valid, ev.share[src], -1)  # no share of one's own: the event is dropped below
        ev.local[refs] = np.minimum(np.maximum(ev.local[refs], ev.local[src] + rng.integers(20, 900, len(refs))), LAST_SEC)
        asrc = src[ev.block[refs] == B_ASSIST]
        assists = refs[ev.block[refs] == B_ASSIST]
        ev.product[assists], ev.category[assists] = ev.product[asrc], ev.category[asrc]
        # a clicker who buys today attributes (most of) its orders to that share, after the click
        click_of = np.full(len(b.person), -1, np.int64)
        click_of[ev.pos[clicks]] = clicks
        c = click_of[orders["pos"]]
        attrib = (c >= 0) & (rng.random(len(c)) < self.gs.click_order_attrib)
        cc = c[attrib]
        orders["share"][attrib] = ev.share[cc]
        orders["local"][attrib] = np.minimum(np.maximum(orders["local"][attrib], ev.local[cc] + 60), LAST_SEC)
        keep = ev.share >= 0
        keep |= (ev.block != B_CLICK) & (ev.block != B_ASSIST)
        if not keep.all():
            self._drop_events(ev, keep)

    @staticmethod
    def _copy_target(dst: Events, di: np.ndarray, src: Events, si: np.ndarray) -> None:
        product_target = src.product[si] >= 0
        dst.etype[di] = np.where(product_target, ET["product_view"], ET["content_view"])
        for k in ("product", "category", "content", "kol", "share"):
            getattr(dst, k)[di] = getattr(src, k)[si]

    @staticmethod
    def _drop_events(ev: Events, keep: np.ndarray) -> None:
        for k in ev.__dataclass_fields__:
            setattr(ev, k, getattr(ev, k)[keep])

    def _first_event_via_share(self, ev_b: Events, ev_a: Events, share_of: np.ndarray) -> None:
        """A share-link newcomer's first event is the shared content/product, carrying the share id."""
        firsts = np.flatnonzero(ev_b.block == B_FIRST)
        who = ev_b.pos[firsts]
        has = share_of[who] >= 0
        self._copy_target(ev_b, firsts[has], ev_a, share_of[who[has]])
        ev_b.props[firsts[has]] = self.v.prop("via_share", self.rng, int(has.sum()))

    def _match_invites(self, ev: Events, inviter_pos: np.ndarray) -> np.ndarray:
        """Event index of the invite that each referral newcomer accepted (distinct per newcomer)."""
        inv = np.flatnonzero(ev.etype == ET["invite_sent"])
        inv = inv[np.lexsort((ev.local[inv], ev.pos[inv]))]
        first = np.searchsorted(ev.pos[inv], inviter_pos, side="left")
        o = np.argsort(inviter_pos, kind="stable")
        srt = inviter_pos[o]
        rank_sorted = np.arange(len(srt)) - np.searchsorted(srt, srt, side="left")
        rank = np.empty_like(rank_sorted)
        rank[o] = rank_sorted
        return inv[first + rank]

    # ------------------------------------------------------------------ tables
    def _utc(self, t: int, local: np.ndarray) -> np.ndarray:
        return self.cal.utc_seconds(t, local)

    def _events_table(self, t: int, parts: list[tuple[Events, Batch]]) -> pa.Table:
        acc = np.concatenate([b.acc[e.pos] for e, b in parts])
        sess_base = [self._next("session", len(b.person)) for _, b in parts]
        session = np.concatenate([s[e.pos] for (e, _), s in zip(parts, sess_base)])
        cat = {k: np.concatenate([getattr(e, k) for e, _ in parts]) for k in Events.__dataclass_fields__}
        o = np.lexsort((np.arange(len(acc)), cat["local"]))
        acc, session = acc[o], session[o]
        cat = {k: a[o] for k, a in cat.items()}
        v = self.v
        return T.make_table("events", {
            "event_id": T.prefixed("ev", self._next("event", len(acc))),
            "user_id": self.a.user_id.take(pa.array(acc)),
            "event_type": T.take(self.etype_vocab, cat["etype"]),
            "event_ts": T.timestamps(self._utc(t, cat["local"])),
            "platform": T.take(self.user_vocab["platform"], self.a.platform[acc]),
            "session_id": T.prefixed("s", session),
            "product_id": T.take(v.product, cat["product"]),
            "category": T.take(self.cat_vocab, cat["category"]),
            "content_id": T.take(v.content, cat["content"]),
            "kol_id": T.take(v.kol, cat["kol"]),
            "community_id": T.take(v.community, cat["community"]),
            "share_id": T.prefixed("sh", np.maximum(cat["share"], 0), mask=cat["share"] < 0),
            "properties": T.take(v.props, cat["props"]),
        })

    def _orders_table(self, t: int, parts: list[tuple[dict, Batch]]) -> pa.Table:
        gs, rng, p, v = self.gs, self.rng, self.p, self.v
        person = np.concatenate([b.person[o["pos"]] for o, b in parts])
        acc = np.concatenate([b.acc[o["pos"]] for o, b in parts])
        cat = np.concatenate([o["category"] for o, _ in parts])
        local = np.concatenate([o["local"] for o, _ in parts])
        share = np.concatenate([o["share"] for o, _ in parts])
        n = len(person)
        plat = self.a.platform[acc]
        scen = (rng.random(n)[:, None] > self.scen_cum[plat]).sum(1).clip(0, len(SCENARIOS) - 1)
        comm = np.where(self.joined[person], p.community[person], -1)
        scen = np.where((scen == SC["community"]) & (comm < 0), SC["other"], scen)
        kol = np.where(np.isin(scen, [SC["content"], SC["live"]]), self._kols(person, 0.7), -1)
        community = np.where(scen == SC["community"], comm, -1)
        value = p.spend[person] * np.asarray(CATEGORY_PRICE)[cat] * rng.gamma(gs.order_gamma_shape, 1.0 / gs.order_gamma_shape, n)
        gross = np.maximum(np.round(value * 100).astype(np.int64), 100)
        promo = bool(self.cal.promo[t])
        coupon = np.where(rng.random(n) < (gs.coupon_prob_promo if promo else gs.coupon_prob),
                          rng.integers(0, len(COUPON_VALUES_CNY), n), -1)
        disc = np.where(coupon >= 0, v.coupon_cents[np.maximum(coupon, 0)], 0)
        threshold = disc * gs.coupon_min_spend_ratio  # "spend 3x, save 1x" coupons
        coupon = np.where(gross >= threshold, coupon, -1)
        disc = np.where(coupon >= 0, disc, 0)
        if promo:
            disc = disc + np.round(gross * gs.promo_discount_pct).astype(np.int64)
        zero = rng.random(n) < gs.zero_amount_prob
        disc = np.where(zero, gross, np.minimum(disc, gross))
        paid = gross - disc
        u = rng.random(n)
        status = np.where(u < gs.cancel_prob, ST["cancelled"],
                          np.where(u < gs.cancel_prob + gs.refund_prob, ST["refunded"], ST["paid"]))
        full = rng.random(n) < gs.full_refund_share
        partial = np.floor(paid * rng.uniform(0.1, 0.7, n)).astype(np.int64)
        refund = np.where(status == ST["refunded"], np.where(full, paid, np.maximum(partial, 1)), 0)
        bad = (status == ST["refunded"]) & ((paid == 0) | (~full & (refund >= paid)))
        status = np.where(bad, ST["paid"], status)
        refund = np.where(bad, 0, refund)
        o = np.lexsort((np.arange(n), local))
        ids = self._next("order", n)
        return T.make_table("orders", {
            "order_id": T.prefixed("od", ids),
            "user_id": self.a.user_id.take(pa.array(acc[o])),
            "order_ts": T.timestamps(self._utc(t, local[o])),
            "status": T.take(self.status_vocab, status[o]),
            "gross_amount": T.decimals(gross[o]),
            "discount_amount": T.decimals(disc[o]),
            "paid_amount": T.decimals(paid[o]),
            "refund_amount": T.decimals(refund[o]),
            "scenario": T.take(self.scen_vocab, scen[o]),
            "category": T.take(self.cat_vocab, cat[o]),
            "kol_id": T.take(v.kol, kol[o]),
            "community_id": T.take(v.community, community[o]),
            "share_id": T.prefixed("sh", np.maximum(share[o], 0), mask=share[o] < 0),
            "coupon_id": T.take(v.coupon, coupon[o]),
        })

    def _invites_table(self, t, ev_a, batch_a, ev_b, batch_b, invite_match, accepted_local, invitee_acc) -> pa.Table:
        parts = [(ev_a, batch_a), (ev_b, batch_b)]
        sel = [np.flatnonzero(e.etype == ET["invite_sent"]) for e, _ in parts]
        inviter = np.concatenate([b.acc[e.pos[s]] for (e, b), s in zip(parts, sel)])
        sent = np.concatenate([e.local[s] for (e, _), s in zip(parts, sel)])
        invitee = np.full(len(inviter), -1, np.int64)
        acc_local = np.full(len(inviter), -1, np.int64)
        ok = invite_match >= 0
        where = np.searchsorted(sel[0], invite_match[ok])
        invitee[where] = invitee_acc[ok]
        acc_local[where] = accepted_local[ok]
        o = np.lexsort((np.arange(len(sent)), sent))
        inviter, sent, invitee, acc_local = inviter[o], sent[o], invitee[o], acc_local[o]
        none = invitee < 0
        return T.make_table("invites", {
            "invite_id": T.prefixed("iv", self._next("invite", len(sent))),
            "inviter_user_id": self.a.user_id.take(pa.array(inviter)),
            "sent_at": T.timestamps(self._utc(t, sent)),
            "invitee_user_id": T.take(self.a.user_id, invitee),
            "accepted_at": T.timestamps(self._utc(t, np.maximum(acc_local, 0)), mask=none),
        })

    def _last_local(self, parts: list[tuple[Events, Batch]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(person, account, last event local second) per active person of the day."""
        persons = np.concatenate([b.person for _, b in parts])
        accs = np.concatenate([b.acc for _, b in parts])
        last = np.concatenate([np.maximum.reduceat(e.local, np.searchsorted(e.pos, np.arange(len(b.person))))
                               if len(b.person) else np.zeros(0, np.int64) for e, b in parts])
        return persons, accs, last

    def _nps_table(self, t: int, parts) -> pa.Table:
        persons, accs, last = self._last_local(parts)
        r = np.flatnonzero(self.rng.random(len(persons)) < self.gs.nps_prob)
        local = np.minimum(last[r] + self.rng.integers(60, 3600, len(r)), LAST_SEC)
        score = np.clip(np.round(self.p.nps_mean[persons[r]] + 1.2 * self.rng.standard_normal(len(r))), 0, 10)
        o = np.lexsort((r, local))
        return T.make_table("nps_responses", {
            "response_id": T.prefixed("nps", self._next("nps", len(r))),
            "user_id": self.a.user_id.take(pa.array(accs[r][o])),
            "responded_at": T.timestamps(self._utc(t, local[o])),
            "score": score[o].astype(np.int32),
        })

    def _erasure_table(self, t: int, persons, acc, erase, parts) -> pa.Table:
        all_p, all_acc, last = self._last_local(parts)
        r = np.flatnonzero(np.isin(all_p, persons[erase])) if erase.any() else np.zeros(0, np.int64)
        local = np.minimum(last[r] + 60, LAST_SEC)
        return T.make_table("erasure_requests", {
            "request_id": T.prefixed("er", self._next("erasure", len(r))),
            "user_id": self.a.user_id.take(pa.array(all_acc[r])),
            "requested_at": T.timestamps(self._utc(t, local)),
        })

    def _spend_table(self, t: int, lo: int, hi: int) -> pa.Table:
        """Spend per (channel, platform): acquired persons x target CAC x noise, plus a base for paid channels."""
        p, rng = self.p, self.rng
        n_new = np.zeros((len(CHANNELS), len(PLATFORMS)), np.int64)
        np.add.at(n_new, (p.channel[lo:hi], p.platform[lo:hi]), 1)
        cac = np.asarray(self.gs.channel_cac)[:, None] * 100.0
        noise = np.exp(0.25 * rng.standard_normal(n_new.shape))
        base = np.where(cac > 0, cac * 0.3 * rng.random(n_new.shape), 0.0)
        base[CH["referral"]] = 0.0
        cents = np.round(cac * n_new * noise + base).astype(np.int64).ravel()
        ch, pl = np.divmod(np.arange(len(CHANNELS) * len(PLATFORMS)), len(PLATFORMS))
        d = pa.array([self.cal.dates[t]] * len(cents), type=pa.date32())
        return T.make_table("marketing_spend", {
            "spend_date": d,
            "acquisition_channel": T.take(self.user_vocab["channel"], ch),
            "platform": T.take(self.user_vocab["platform"], pl),
            "spend": T.decimals(cents),
        })

    def _emit_users(self, t: int, acc: np.ndarray, created: np.ndarray, reg_local: np.ndarray,
                    referrer: np.ndarray) -> None:
        """Queue users rows of accounts created today in the file of their (possibly late) landing day."""
        a, p = self.a, self.p
        acc, reg_local, referrer = acc[created], reg_local[created], referrer[created]
        if len(acc) == 0:
            return
        person = a.person[acc]
        reg = self._utc(t, reg_local)
        self.acc_reg_sec[acc] = reg
        late = a.late_days[acc].astype(np.int64)
        land = np.where(t + late < self.cal.days, t + late, t)
        primary = a.rank[acc] == 0
        ch = np.where(primary, p.channel[person], CH["organic"])  # later accounts: the person found another app
        kol = np.where(primary, p.kol[person], -1)
        ref = np.where(primary, referrer, -1)
        tbl = T.make_table("users", {
            "user_id": a.user_id.take(pa.array(acc)),
            "platform": T.take(self.user_vocab["platform"], a.platform[acc]),
            "registered_at": T.timestamps(reg),
            "acquisition_channel": T.take(self.user_vocab["channel"], ch),
            "kol_id": T.take(self.v.kol, kol),
            "referrer_user_id": T.take(a.user_id, ref),
            "city_tier": p.city_tier[person].astype(np.int32),
            "age_band": T.take(self.user_vocab["age"], p.age_band[person]),
            "region": T.take(self.user_vocab["region"], p.region[person]),
            "phone": a.phone.take(pa.array(acc)),
            "device_id": a.device_id.take(pa.array(acc)),
            "union_id": a.union_id.take(pa.array(acc)),
            "consent_analytics": p.consent_a[person],
            "consent_marketing": p.consent_m[person],
            "consent_updated_at": T.timestamps(reg + self.rng.integers(0, 60, len(acc))),
        })
        for day in np.unique(land):
            self.pending_users.setdefault(int(day), []).append(tbl.filter(pa.array(land == day)))

    def _users_for_day(self, t: int) -> pa.Table:
        parts = self.pending_users.pop(t, [])
        if not parts:
            return T.make_table("users", {f.name: pa.array([], type=f.type) for f in T.schema("users")})
        tbl = pa.concat_tables(parts)
        return tbl.take(pa.array(np.lexsort((np.arange(tbl.num_rows),
                                             tbl.column("registered_at").cast(pa.int64()).to_numpy()))))
