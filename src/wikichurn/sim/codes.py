"""The domain-code scheme the simulator and the replay draw from: languages (with their readers'
UTC offsets), projects, special codes, access types, and the measured weekly profiles."""

from __future__ import annotations

# Languages in rough order of traffic, with a typical UTC offset of their readers (hours):
# ``code:offset``; ``*`` marks readers spread over many time zones (weaker daily cycle).
_LANGUAGE_TABLE = """
en:* de:1 ja:9 es:-4 ru:3 fr:1 it:1 zh:8 pt:-3 pl:1 fa:3.5 ar:3 nl:1 id:7 tr:3 uk:2 ko:9 vi:7 he:2
sv:1 cs:1 hu:1 fi:2 th:7 ro:2 hi:5.5 no:1 da:1 el:2 bn:6 sr:1 bg:2 ca:1 ms:8 hr:1 sk:1 lt:2 simple:*
sl:1 et:2 lv:2 az:4 ta:5.5 ur:5 kk:5 hy:4 ka:4 eu:1 ml:5.5 mr:5.5 te:5.5 gl:1 uz:5 be:3 sq:1 mk:1
tl:8 eo:* bs:1 kn:5.5 arz:2 is:0 ne:5.75 af:2 si:5.5 la:* zh-yue:8 zh-min-nan:8 zh-classical:8
be-tarask:3 cy:0 ga:0 sw:3 my:6.5 km:7 gu:5.5 pa:5.5 mn:8 ky:6 tg:5 tt:3 ba:5 ce:3 lb:1 ast:1 an:1
oc:1 br:1 fy:1 nn:1 jv:7 su:7 ckb:3 ps:4.5 sd:5 am:3 so:3 ha:1 yo:1 ig:1 zu:2 xh:2 ceb:8 war:8 als:1
bar:1 nds:1 pms:1 scn:1 vec:1 lmo:1 sco:0 yi:* fo:0 gd:0 li:1 lij:1 mt:1 rm:1 sc:1 wa:1 vo:* ia:*
io:* ie:* jbo:* ang:0 sa:5.5 bo:8 dv:5 ug:6 or:5.5 as:5.5 mai:5.75 new:5.75 pnb:5 lo:7 ti:3 om:3
rw:2 ln:1 kg:1 ny:2 sn:2 st:2 tn:2 ts:2 ss:2 ve:2 ff:0 wo:0 ak:0 tw:0 ee:0 bm:0 sg:1 lg:3 mg:3 ht:-5
qu:-5 ay:-4 gn:-3 nah:-6 haw:-10 sm:13 to:13 fj:12 mi:12 ty:-10 ch:10 bi:11 kl:-2 iu:-5 cr:-6 chr:-5
nv:-7 ik:-9 se:1 kv:3 udm:4 cv:3 sah:9 os:3 ab:3 av:3 lez:3 xmf:4 lbe:3 krc:3 kbd:3 ady:3 tyv:7
bxr:8 xal:3 mhr:3 mrj:3 koi:5 myv:3 mdf:3 pnt:2 tcy:5.5 bpy:6 bh:5.5 pi:5.5 got:* cu:* ksh:1 pfl:1
frr:1 stq:1 zea:1 vls:1 pcd:1 nrm:1 co:1 frp:1 fur:1 lad:2 hif:12 pih:11 kw:0 gv:0 aa:3 hz:2 ho:10
mus:-6 kj:2 ii:8 cho:-6 ng:2
"""
LANGUAGES: tuple[tuple[str, float | None], ...] = tuple(
    (code, None if tz == "*" else float(tz)) for code, tz in (token.split(":") for token in _LANGUAGE_TABLE.split())
)

# Project suffixes (no suffix = Wikipedia) and their typical share of the language's Wikipedia.
PROJECTS: tuple[tuple[str, float], ...] = (
    ("", 1.0),
    ("d", 0.04),
    ("s", 0.01),
    ("q", 0.006),
    ("b", 0.006),
    ("voy", 0.003),
    ("n", 0.002),
    ("v", 0.002),
)
# Codes outside the language scheme: (code, prior share of English Wikipedia, access, tz).
# ``.m`` is ambiguous: ``commons.m`` is desktop Commons, ``commons.m.m`` mobile Commons.
SPECIALS: tuple[tuple[str, float, str, float | None], ...] = (
    ("commons.m", 0.012, "desktop", None),
    ("commons.m.m", 0.004, "mobile", None),
    ("www.wd", 0.008, "desktop", None),
    ("m.wd", 0.0015, "mobile", None),
    ("meta.m", 0.0015, "desktop", None),
    ("meta.m.m", 0.0003, "mobile", None),
    ("species.m", 0.0006, "desktop", None),
    ("species.m.m", 0.0004, "mobile", None),
    ("www.w", 0.002, "desktop", None),
    ("m.w", 0.0002, "mobile", None),
    ("incubator.m", 0.0002, "desktop", None),
    ("incubator.m.m", 0.00005, "mobile", None),
    ("outreach.m", 0.00008, "desktop", None),
    ("wikimania.m", 0.00005, "desktop", None),
    ("foundation.f", 0.0004, "desktop", None),
    ("foundation.m.f", 0.0002, "mobile", None),
)
ACCESS = ("desktop", "mobile", "zero")

# Weekly profiles, Monday..Sunday, as relative deviations from the weekly mean. Measured on the
# real English Wikipedia daily totals 2014-10..2015-06 (see docs/simulator.md).
WEEKLY_DESKTOP = (0.080, 0.080, 0.060, 0.022, -0.022, -0.127, -0.074)
WEEKLY_MOBILE = (0.019, -0.027, -0.045, -0.049, -0.054, 0.032, 0.138)
