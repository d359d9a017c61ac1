"""X v1.1 Tweet objects, v1.1 DM events and Account Activity webhook bodies, on real recorded payloads.

Recorded files: channels/recorded/tweepy/x_api_v1_1/ (REST responses), channels/recorded/tweet_parser/
(the Tweet objects Account Activity puts in `tweet_create_events`), channels/recorded/ibm-twitter-customer-care/.
No real Account Activity envelope could be copied (PLATFORMS.md 1c): the envelopes below are built in code around
the recorded inner objects, in the shape of X's documentation (xdevplatform/docs,
x-api/account-activity/introduction.mdx, "Payload Examples").
"""

import copy
import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import Direction, EventKind, PayloadError
from channels.adapters.x import XAdapter, dm_pair_key, snowflake_time

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
UTC = dt.UTC
MENTION, REPLY, POST = EventKind.MENTION, EventKind.REPLY, EventKind.POST

TIMELINE = "tweepy/x_api_v1_1/user_timeline_twitter_replies.json"
SEARCH = "tweepy/x_api_v1_1/search_tweets.json"
DM_EXCHANGES = "tweepy/x_api_v1_1/direct_message_event_new_and_destroy.exchanges.json"
UPDATE_EXCHANGES = "tweepy/x_api_v1_1/update_and_destroy_status.exchanges.json"
TWEET_PARSER = "tweet_parser/x_api_v1_1_original_format/tweets.jsonl"
ROBOT_PRINCESS = "815279070241955840"  # the tweet_parser test account, @RobotPrincessFi
TWEEPY_DEV = "1072250532645998596"  # @TweepyDev, the account of the tweepy recordings


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def exchange(path: str, index: int) -> dict:
    return json.loads(recorded(path))["exchanges"][index]["response_body"]


def tweet_parser_lines() -> list[bytes]:
    return recorded(TWEET_PARSER).splitlines()


def tweet_parser_tweet(text_start: str) -> dict:
    return next(t for t in map(json.loads, tweet_parser_lines()) if t["text"].startswith(text_start))


TIMELINE_EVENTS = [
    ('1341793727208181762', '1341404809354760192', '1341404809354760192',
     '@TreyNKennedy 👀 https://t.co/1CZ6VbgaIL'),
    ('1341536025076764674', '1341402852363743233', '1341402852363743233',
     '@callme_kamikaze 👀 https://t.co/UT2gblsu2X'),
    ('1341513367601754112', '1341401270519799810', '1341401270519799810', '@blackprints 👀 https://t.co/qwSIVaUcHG'),
    ('1341513102446256130', '1341406864462983169', '1341406864462983169', '@chunkyfila 👀 https://t.co/E9GKhyh5cl'),
    ('1341494971405373445', '1341478136744202246', '1341478136744202246', '@Ac3wastaken ah yes, tbt 1100'),
    ('1341479410512359427', '1341401484433518593', '1341401484433518593',
     '@daisyvolume6 we prefer the version with the S'),
    ('1341477335334326275', '1341407274481446914', '1341407274481446914',
     "@ziloow_ it's not too late https://t.co/xy3k6c7ViA"),
    ('1341477210918629376', '1341414166519820288', '1341414166519820288',
     "@RealAttenshan as long as there's not one more for good luck"),
    ('1341477005582319617', '1341408266178490369', '1341408266178490369',
     "@rishipuff the things we'd give to be in algebra right now"),
    ('1341476726619201536', '1341401524904333312', '1341401524904333312', "@mormied and they're moldy"),
    ('1341398683594715138', '', '1341398683594715138', 'roast 2020. go.'),
    ('1341166905508286465', '1331693357651927044', '1331693357651927044',
     '@_aanittangele 👀 https://t.co/UxIgmUXXRt'),
    ('1341163570873044992', '1298971211221868546', '1298971211221868546',
     '@_major_williams 👀 https://t.co/Oy43iM3PoP'),
    ('1341161863103488003', '1341161857931874304', '1341069743487381504',
     '🗣 @_major_williams https://t.co/hqS0XRDQJG'),
    ('1341161857931874304', '1341161853343334401', '1341069743487381504', '🗣 @rynfitz https://t.co/Imy12dEThs'),
    ('1341161853343334401', '1341069743487381504', '1341069743487381504',
     '🗣 @_aanittangele https://t.co/4Kto7VP11u'),
    ('1341159280104398857', '1331561954859737092', '1331561954859737092', '@HElbanadi 👀 https://t.co/9iANfKkxec'),
    ('1341157247574028291', '1334956222127112192', '1334956222127112192', '@emilybern 👀 https://t.co/R9dNhkreKN'),
    ('1341145506743943168', '1278151810662887425', '1278151810662887425',
     '@BunAndLeggings 👀 https://t.co/3MaFbAPqwq'),
    ('1341144046450962432', '1334318265573765120', '1334318265573765120', '@AyySheree 👀 https://t.co/0Tcp9OPcSr'),
]


SEARCH_EVENTS = [
    ('1149825924029980674', MENTION, '789181790', 'tweepy_pie', '1149825924029980674', '',
     'RT @KassidyCook1: Me, during the season 3 Stranger Things finale https://t.co/zoXlQF2TrZ'),
    ('1149824717089574913', MENTION, '789181790', 'tweepy_pie', '1149824717089574913', '',
     ('RT @Stranger_Things: we raise our slurpees to the most dangerous man in the '
       'world. https://t.co/1t0TVm6TDH')),
    ('1149824190259834881', MENTION, '789181790', 'tweepy_pie', '1149824190259834881', '',
     ('RT @BBCRajiniV: An important thread 👇🏽\n\nMany of us take water for granted - but '
       'imagine living in a big city, where the taps have run dry.…')),
    ('1149793934215995397', MENTION, '789181790', 'tweepy_pie', '1149793934215995397', '',
     ('RT @Chelseaaa2710: How the fuck does Curtis have 2 girls fighting over him but '
       'Ovie is single ??? What am I missing ?? He’s an absolute dia…')),
    ('1149788838430224391', MENTION, '251602117', 'ErikDePay', '1149788838430224391', '',
     "Hey Tweepy's! Slaap lekker!! https://t.co/bZQutx3nQ6"),
    ('1149781555226828800', MENTION, '955465072662515712', 'PTCruiserBot', '1149781555226828800', '',
     'Sending my first tweet via Tweepy!'),
    ('1149698684646563840', MENTION, '939060292008468480', 'curated_data', '1149698684646563840', '',
     ('Scrape Tweets from Twitter using Python and Tweepy #data #tweets #python #twitter '
       'https://t.co/JJfExblgzY')),
    ('1149678185375600641', REPLY, '594625034', 'jluisperezg', '1149676837204717568', '1149676837204717568',
     ('@Kirzahk @DianalvarezBack @cloureiro80 @oscarmh @seguridadyredes @jdelacruz_IoT '
       '@andresvilarino @agarcod… https://t.co/3jEvWAPNXX')),
    ('1149624235305791489', MENTION, '1014881882180341762', 'pkerbynn', '1149624235305791489', '',
     'tweepy says: global code 2019 ^_^'),
    ('1149624207275249670', MENTION, '64807533', 'Apomor', '1149624207275249670', '',
     'Apomor-Test tweet from Tweepy Python'),
    ('1149603881011126272', MENTION, '251602117', 'ErikDePay', '1149603881011126272', '',
     ("Inmiddels ook allemaal uitgeslopen Tweepy's? Deze uitsluiper was ook lekker bezig "
       'van het weekend. #libellen \nFijne… https://t.co/QuRvVEkMJn')),
    ('1149603837826629632', MENTION, '789181790', 'tweepy_pie', '1149603837826629632', '',
     ('RT @YEPSportsdesk: Guiseley 1 Leeds United 2\n\nOur man @JoeUrquhartYEP looks at '
       'all the talking points, big moments and key player ratings…')),
    ('1149603041349259266', MENTION, '789181790', 'tweepy_pie', '1149603041349259266', '',
     ('RT @Independent: Passengers violently ejected from their seats on turbulent '
       'flight https://t.co/lf6TX6XBHD')),
    ('1149599699420110848', MENTION, '955465072662515712', 'PTCruiserBot', '1149599699420110848', '',
     'Sending my first tweet via Tweepy!'),
    ('1149557488447975429', MENTION, '1149247967263510528', 'iAns51177107', '1149557488447975429', '',
     'test Tweepy'),
]


TWEET_PARSER_EVENTS = [
    ('887450119146270723', MENTION, '887450119146270723', '',
     'N) A Tweet tagged with a Twitter place. https://t.co/rspQ5CZUfX'),
    ('872836379595620353', MENTION, '872836379595620353', '', 'L) This is a #Tweet with a #hashtag'),
    ('867834809732677634', MENTION, '867834809732677634', '',
     "K) Let's try just one photo! 🐰 https://t.co/ubynnad49V"),
    ('867478524235366400', MENTION, '867478524235366400', '',
     ("RT @notFromShrek: Since I feel like I shouldn't be someone who is condescending "
       'on the internet without offering a little help: https://t.co/bN4xcn4l2n')),
    ('867478493000368128', MENTION, '867478493000368128', '',
     'I feel like this is still relevant: https://t.co/N8vugfA7tF'),
    ('867478374385557508', MENTION, '867478374385557508', '',
     ('RT @notFromShrek: .@ericmbudd is sitting at the table sadly refreshing Twitter, '
       'with no Tweets to read.\n👸🏼: 🙄\n🚴🏻: 😰😫')),
    ('867475201482661888', MENTION, '867475201482661888', '', 'Redgular old quote-Tweet. https://t.co/hgDK29nJHx'),
    ('867474613139156993', MENTION, '867474613139156993', '',
     ('140 chars + all of this stuff in the previous Tweet. Whoa.\nLorem ipsum dolor sit '
       'amet, consectetur adipiscing elit, sed do eiusmod tempor... '
       'https://t.co/aYEbU5CVCD')),
    ('867472736871866368', REPLY, '863566329168711681', '863566329168711681',
     ('@notFromShrek @ericmbudd G) 140 chars & replies. Here, have some emoji nonsense: '
       '🍏🍎🍐🍊🍇🍉🍌🍋🍓🍈🍒🍑🍅🥑🥝🍍🍆🥒🥕🌽🌰🍠🥔🌶🥜🍯🥐🍞🍳🥚🧀🥖🥓🥞🍤🍗🍔🌭🍕🍖🍟🥙🌮🌯🍜🍝🥗🍲🍥🍣🍱🍘🍙🍚🍛🍢🍡🍧🍨🍮🎂🍰🍦🍭🍬🍫🍿🍼🥛🍪🍩☕️🍵🍶🍺🥃🍷🥂🍻🍸🍹🍾🍽')),
    ('867471562613575680', MENTION, '867471562613575680', '',
     ('F) Tweet with 140 characters + media. The quick brown fox jumped over the lazily '
       'Tweeting dog. Lorem ipsum dolor sit amet, consectetur adipi '
       'https://t.co/x2MZliBLyk')),
    ('867471067178090496', MENTION, '867471067178090496', '',
     'E) Tweet with mentions. Gonna @-mention some people here. @notFromShrek @Gnip @Twitter'),
    ('867470833744191488', MENTION, '867470833744191488', '',
     'Dd) Tweet with a link to some tasty butterscotch sauce https://t.co/ZWLglcp74z'),
    ('867468929492332544', REPLY, '863566329168711681', '863566329168711681',
     ('@notFromShrek @ericmbudd C) Example of a regular Tweet with a reply. Just '
       'providing more Tweets to read. 😉')),
    ('867468508149370880', MENTION, '867468508149370880', '',
     'B) This is a regular old Tweet with ✨media✨ https://t.co/yBpS06d2dD'),
    ('867468138991964160', MENTION, '867468138991964160', '', 'A) This is a regular old Tweet. 🐣'),
]


def test_user_timeline_every_reply_and_its_thread() -> None:
    events = XAdapter().parse(recorded(TIMELINE))

    assert [(e.external_id, e.reply_to_id, e.thread_key, e.text) for e in events] == TIMELINE_EVENTS
    assert [e.kind for e in events] == [REPLY] * 10 + [MENTION] + [REPLY] * 9
    assert {(e.author.external_id, e.author.handle, e.author.display_name, e.author.profile_url) for e in events} == {
        ("783214", "Twitter", "Twitter", "https://x.com/Twitter")}
    assert events[0].author.avatar_url == "https://pbs.twimg.com/profile_images/1308010958862905345/-SGZioPb_normal.jpg"
    assert events[0].occurred_at == dt.datetime(2020, 12, 23, 17, 12, 8, tzinfo=UTC)
    assert events[0].attachments == ({"type": "photo", "id": "1341793718672760840",
                                      "url": "https://pbs.twimg.com/media/Ep8CRytXIAgWtpq.jpg",
                                      "expanded_url": "https://twitter.com/Twitter/status/1341793727208181762/photo/1"},)
    assert all(e.direction == Direction.INBOUND and e.problems() == [] for e in events)


def test_self_reply_chain_in_one_body_shares_its_root() -> None:
    events = {e.external_id: e for e in XAdapter().parse(recorded(TIMELINE))}

    # 1341161863103488003 -> 1341161857931874304 -> 1341161853343334401 -> 1341069743487381504 (not in the body)
    chain = ["1341161863103488003", "1341161857931874304", "1341161853343334401"]
    assert {events[i].thread_key for i in chain} == {"1341069743487381504"}
    assert [events[i].reply_to_id for i in chain] == ["1341161857931874304", "1341161853343334401",
                                                      "1341069743487381504"]


def test_timeline_of_our_own_account_is_outbound() -> None:
    events = XAdapter(external_id="783214").parse(recorded(TIMELINE))

    assert {e.direction for e in events} == {Direction.OUTBOUND}
    roast = next(e for e in events if e.external_id == "1341398683594715138")
    assert (roast.kind, roast.thread_key) == (POST, "1341398683594715138")


def test_search_every_tweet_retweets_and_truncated_reply() -> None:
    events = XAdapter().parse(recorded(SEARCH))

    assert [(e.external_id, e.kind, e.author.external_id, e.author.handle, e.thread_key, e.reply_to_id, e.text)
            for e in events] == SEARCH_EVENTS
    assert all(e.problems() == [] for e in events)


def test_retweet_text_comes_from_the_retweeted_tweet_when_it_is_whole() -> None:
    retweet = tweet_parser_tweet("RT @notFromShrek: Since I feel")
    assert retweet["text"].endswith("https://t.c…")  # X cut the retweet's own text

    [event] = XAdapter().parse(retweet)

    assert event.text == "RT @notFromShrek: " + retweet["retweeted_status"]["text"]
    assert event.text.endswith("without offering a little help: https://t.co/bN4xcn4l2n")


def test_retweet_keeps_its_own_text_when_the_retweeted_one_is_cut_too() -> None:
    # A REST answer without tweet_mode=extended cuts both; the retweet's own text is then the longer one.
    retweet = json.loads(recorded(SEARCH))["statuses"][2]
    assert retweet["retweeted_status"]["truncated"] is True

    events = XAdapter().parse(recorded(SEARCH))

    assert events[2].text == retweet["text"]
    assert events[2].text.endswith("where the taps have run dry.…")
    assert events[1].attachments[0]["type"] == "video"
    assert events[1].attachments[0]["video_url"] == (
        "https://video.twimg.com/amplify_video/1149413254801891329/vid/720x720/larklq6wps5gzV0-.mp4?tag=13")


def test_single_status_is_a_post_of_its_author() -> None:
    [event] = XAdapter(external_id="783214").parse(recorded("tweepy/x_api_v1_1/statuses_show.json"))

    assert (event.external_id, event.kind, event.direction) == ("266367358078169089", POST, Direction.OUTBOUND)
    assert (event.author.external_id, event.author.handle) == ("783214", "Twitter")
    assert (event.thread_key, event.reply_to_id) == ("266367358078169089", "")
    assert event.text == ('RT @TwitterEng: Bolstering our infrastructure. "As  usage patterns change, Twitter can '
                          'remain resilient." http://t.co/uML86B6s')
    assert event.occurred_at == dt.datetime(2012, 11, 8, 2, 31, 41, tzinfo=UTC)


@pytest.mark.parametrize("index", [0, 1])
def test_status_update_and_destroy_answers_are_the_same_tweet(index: int) -> None:
    # statuses/destroy answers with the tweet it destroyed: a parser cannot tell it from the create.
    [event] = XAdapter(external_id=TWEEPY_DEV).parse(exchange(UPDATE_EXCHANGES, index))

    assert (event.external_id, event.kind, event.direction) == ("1149868020346556416", POST, Direction.OUTBOUND)
    assert (event.author.external_id, event.author.handle, event.author.display_name) == (
        TWEEPY_DEV, "TweepyDev", "Tweepy Testing")
    assert (event.thread_key, event.reply_to_id, event.text) == ("1149868020346556416", "", "testing 1000")


def test_v1_dm_event() -> None:
    [event] = XAdapter().parse(exchange(DM_EXCHANGES, 0))

    assert (event.external_id, event.kind) == ("1150493286110552068", EventKind.DIRECT_MESSAGE)
    assert (event.author.external_id, event.author.handle) == (TWEEPY_DEV, "")
    assert event.thread_key == f"dm:{TWEEPY_DEV}-{TWEEPY_DEV}"  # tweepy sent this DM to its own account
    assert (event.reply_to_id, event.text) == ("", "test message")
    assert event.occurred_at == dt.datetime(2019, 7, 14, 19, 52, 29, 197000, tzinfo=UTC)
    assert event.problems() == []


def test_v1_dm_delete_answer_has_no_body() -> None:
    assert exchange(DM_EXCHANGES, 1) is None
    with pytest.raises(PayloadError, match="must be a JSON object"):
        XAdapter().parse(exchange(DM_EXCHANGES, 1))


def test_tweet_parser_every_tweet() -> None:
    events = [e for line in tweet_parser_lines() for e in XAdapter().parse(line)]

    assert [(e.external_id, e.kind, e.thread_key, e.reply_to_id, e.text) for e in events] == TWEET_PARSER_EVENTS
    assert {(e.author.external_id, e.author.handle, e.author.display_name) for e in events} == {
        (ROBOT_PRINCESS, "RobotPrincessFi", "jk no")}
    assert all(e.problems() == [] for e in events)


def test_long_tweet_reads_extended_tweet_and_unescapes_entities() -> None:
    tweet = tweet_parser_tweet("@notFromShrek @ericmbudd G)")
    assert tweet["truncated"] is True
    assert "&amp;" in tweet["extended_tweet"]["full_text"]

    [event] = XAdapter().parse(json.dumps(tweet))

    assert event.text.startswith("@notFromShrek @ericmbudd G) 140 chars & replies. Here, have some emoji")
    assert event.text.endswith("🍸🍹🍾🍽")
    assert event.occurred_at == dt.datetime(2017, 5, 24, 20, 9, 51, tzinfo=UTC)


def test_quote_tweets_carry_the_quoted_tweet() -> None:
    events = [e for line in tweet_parser_lines() for e in XAdapter().parse(line)]

    quotes = {e.external_id: e.attachments for e in events if any(a["type"] == "quote" for a in e.attachments)}
    assert quotes == {
        "867478493000368128": ({"type": "quote", "tweet_id": "861645830863822848",
                                "url": "https://x.com/i/web/status/861645830863822848"},),
        "867475201482661888": ({"type": "quote", "tweet_id": "867470833744191488",
                                "url": "https://x.com/i/web/status/867470833744191488"},),
        "867474613139156993": ({"type": "quote", "tweet_id": "867473446648676352",
                                "url": "https://x.com/i/web/status/867473446648676352"},),
    }


def test_media_of_tweet_parser_tweets() -> None:
    [photo] = XAdapter().parse(json.dumps(tweet_parser_tweet("K) Let's try")))
    [gif] = XAdapter().parse(json.dumps(tweet_parser_tweet("B) This is a regular")))

    assert photo.attachments == ({"type": "photo", "id": "867834752379826177",
                                  "url": "https://pbs.twimg.com/media/DAsrG_tWsAEzeEy.jpg",
                                  "expanded_url": "https://twitter.com/RobotPrincessFi/status/867834809732677634/photo/1"},)
    assert gif.attachments[0]["type"] == "animated_gif"
    assert gif.attachments[0]["url"] == "https://pbs.twimg.com/tweet_video_thumb/DAnd_n5XUAEIEP_.jpg"
    assert gif.attachments[0]["video_url"].startswith("https://video.twimg.com/")


def test_tweet_without_user_has_no_author() -> None:
    tweet = tweet_parser_tweet("A) This is")
    del tweet["user"]

    [event] = XAdapter().parse(tweet)

    assert event.author is None
    assert (event.external_id, event.kind) == ("867468138991964160", MENTION)


def test_edit_history_gives_create_and_edit_on_the_first_id() -> None:
    # An edited version as Account Activity sends it (documented `edit_history`), derived from a recorded tweet.
    original = tweet_parser_tweet("A) This is")
    edited = {**copy.deepcopy(original), "id_str": "867468200000000000", "text": "A) This is an edited Tweet. 🐣",
              "created_at": "Wed May 24 19:53:00 +0000 2017",
              "edit_history": {"initial_tweet_id": original["id_str"],
                               "edit_tweet_ids": [original["id_str"], "867468200000000000"]}}

    create, edit = XAdapter().parse(edited)

    assert (create.kind, create.external_id, edit.kind, edit.external_id) == (
        MENTION, "867468138991964160", EventKind.EDIT, "867468138991964160")
    assert create.occurred_at == snowflake_time("867468138991964160")
    assert edit.occurred_at == dt.datetime(2017, 5, 24, 19, 53, tzinfo=UTC)
    assert edit.text == create.text == "A) This is an edited Tweet. 🐣"
    assert edit.thread_key == create.thread_key == "867468138991964160"


@pytest.mark.parametrize("control", [
    {"edit": {"initial_tweet_id": "867468138991964160",
              "edit_control_initial": {"edit_tweet_ids": ["867468138991964160", "867468200000000000"]}}},
    {"edit": {"initial_tweet_id": "867468138991964160"}},
])
def test_rest_ext_edit_control_is_read_too(control: dict) -> None:
    tweet = {**tweet_parser_tweet("A) This is"), "id_str": "867468200000000000", "ext_edit_control": control}

    events = XAdapter().parse(tweet)

    assert [(e.kind, e.external_id) for e in events] == [(MENTION, "867468138991964160"),
                                                         (EventKind.EDIT, "867468138991964160")]


def test_unedited_tweet_with_edit_history_is_one_create() -> None:
    tweet = tweet_parser_tweet("A) This is")
    tweet["edit_history"] = {"initial_tweet_id": tweet["id_str"], "edit_tweet_ids": [tweet["id_str"]]}

    assert [e.kind for e in XAdapter().parse(tweet)] == [MENTION]


# -- Account Activity envelopes -----------------------------------------------------------------------------------


def test_tweet_create_events_with_our_own_tweets() -> None:
    tweets = [json.loads(line) for line in tweet_parser_lines()]
    body = {"for_user_id": ROBOT_PRINCESS, "tweet_create_events": tweets}

    events = XAdapter(external_id=ROBOT_PRINCESS).parse(json.dumps(body).encode())

    assert len(events) == 15
    assert {e.direction for e in events} == {Direction.OUTBOUND}
    assert [e.kind for e in events].count(POST) == 13
    reply = next(e for e in events if e.external_id == "867468929492332544")
    assert (reply.kind, reply.reply_to_id, reply.thread_key) == (REPLY, "863566329168711681", "863566329168711681")


def test_for_user_id_is_our_account_when_the_adapter_has_none() -> None:
    body = {"for_user_id": ROBOT_PRINCESS, "user_has_blocked": "false",
            "tweet_create_events": [tweet_parser_tweet("E) Tweet with mentions")]}

    [event] = XAdapter().parse(body)

    assert (event.kind, event.direction) == (POST, Direction.OUTBOUND)


def test_mention_by_someone_else_is_inbound() -> None:
    body = {"for_user_id": "783214", "tweet_create_events": [tweet_parser_tweet("E) Tweet with mentions")]}

    [event] = XAdapter(external_id="783214").parse(body)

    assert (event.kind, event.direction, event.author.handle) == (MENTION, Direction.INBOUND, "RobotPrincessFi")


def test_body_for_another_account_is_refused() -> None:
    body = {"for_user_id": "783214", "tweet_create_events": [tweet_parser_tweet("E) Tweet with mentions")]}

    with pytest.raises(PayloadError, match="for user 783214, not for this account"):
        XAdapter(external_id=ROBOT_PRINCESS).parse(body)


def dm_envelope(recipient: str = "750362064426721281") -> dict:
    """The recorded v1.1 DM event, re-addressed to another user, in a documented `direct_message_events` body."""
    event = copy.deepcopy(exchange(DM_EXCHANGES, 0)["event"])
    event["message_create"]["target"]["recipient_id"] = recipient
    sender = exchange(UPDATE_EXCHANGES, 0)["user"]  # @TweepyDev's recorded user object
    return {"for_user_id": recipient, "direct_message_events": [event],
            "apps": {"13090192": {"id": "13090192", "name": "FuriousCamperTestApp1"}},
            "users": {TWEEPY_DEV: {"id": TWEEPY_DEV, "name": sender["name"], "screen_name": sender["screen_name"],
                                   "profile_image_url_https": sender["profile_image_url_https"]}}}


def test_direct_message_events_use_the_users_map() -> None:
    [event] = XAdapter(external_id="750362064426721281").parse(dm_envelope())

    assert (event.external_id, event.kind, event.direction) == (
        "1150493286110552068", EventKind.DIRECT_MESSAGE, Direction.INBOUND)
    assert (event.author.external_id, event.author.handle, event.author.display_name) == (
        TWEEPY_DEV, "TweepyDev", "Tweepy Testing")
    assert event.author.avatar_url.endswith("default_profile_normal.png")
    assert (event.reply_to_id, event.text) == ("", "test message")


def test_webhook_dm_lands_in_the_thread_of_the_polled_v2_conversation() -> None:
    # The same pair of users in the recorded v2 DM send: X's one-to-one conversation id is "<smaller>-<larger>".
    v2_conversation = json.loads(recorded("tweepy/x_api_v2/dm_manage_and_lookup.exchanges.json"))[
        "exchanges"][0]["response_body"]["data"]["dm_conversation_id"]

    [event] = XAdapter(external_id="750362064426721281").parse(dm_envelope())

    assert event.thread_key == f"dm:{v2_conversation}" == "dm:750362064426721281-1072250532645998596"
    assert dm_pair_key("1072250532645998596", "750362064426721281") == event.thread_key  # numeric, not text order


def test_our_own_dm_echo_is_outbound() -> None:
    [event] = XAdapter(external_id=TWEEPY_DEV).parse({**dm_envelope(), "for_user_id": TWEEPY_DEV})

    assert event.direction == Direction.OUTBOUND


def test_dm_list_answer_and_non_message_events() -> None:
    event = exchange(DM_EXCHANGES, 0)["event"]
    adapter = XAdapter()

    events = adapter.parse({"events": [event, {**event, "id": "1", "type": "welcome_message"}], "next_cursor": "x"})

    assert [e.external_id for e in events] == ["1150493286110552068"]
    assert adapter.skipped == [("X v1.1 DM events[1]", "DM event type 'welcome_message' is not a message")]


def test_tweet_delete_events() -> None:
    body = {"for_user_id": TWEEPY_DEV,
            "tweet_delete_events": [{"status": {"id": "1149868020346556416", "user_id": TWEEPY_DEV},
                                     "timestamp_ms": "1562985000000"}]}

    [event] = XAdapter(external_id=TWEEPY_DEV).parse(body)

    assert (event.kind, event.external_id, event.thread_key) == (EventKind.DELETE, "1149868020346556416", "")
    assert event.occurred_at == dt.datetime(2019, 7, 13, 2, 30, tzinfo=UTC)
    assert (event.author.external_id, event.direction) == (TWEEPY_DEV, Direction.OUTBOUND)
    assert event.problems() == []


@pytest.mark.parametrize(("body", "where"), [
    ({"for_user_id": TWEEPY_DEV, "favorite_events": [{"id": "a7ba59eab0bfcba386f7acedac279542"}]}, "favorite_events"),
    ({"for_user_id": TWEEPY_DEV, "follow_events": [{"type": "unfollow"}]}, "follow_events"),
    ({"for_user_id": TWEEPY_DEV, "direct_message_indicate_typing_events": [{"sender_id": "1"}]},
     "direct_message_indicate_typing_events"),
    ({"for_user_id": TWEEPY_DEV, "direct_message_mark_read_events": [{"last_read_event_id": "1"}]},
     "direct_message_mark_read_events"),
    ({"user_event": {"revoke": {"source": {"user_id": TWEEPY_DEV}}}}, "user_event"),
    ({"replay_job_status": {"job_state": "Complete"}}, "replay_job_status"),
    ({"for_user_id": TWEEPY_DEV, "spaces_events": []}, "spaces_events"),
    ({"for_user_id": TWEEPY_DEV, "brand_new_events": [{}]}, "brand_new_events"),
])
def test_other_activity_kinds_are_skipped_not_errors(body: dict, where: str) -> None:
    adapter = XAdapter(external_id=TWEEPY_DEV)

    assert adapter.parse(body) == []
    assert [w for w, _ in adapter.skipped] == [where]


def test_unknown_kinds_beside_a_tweet_do_not_lose_the_tweet() -> None:
    adapter = XAdapter()
    body = {"for_user_id": "783214", "tweet_create_events": [tweet_parser_tweet("A) This is")],
            "brand_new_events": [{}]}

    assert [e.external_id for e in adapter.parse(body)] == ["867468138991964160"]
    assert adapter.skipped == [("brand_new_events", "unknown X Account Activity event kind")]


def test_x_activity_api_events_are_skipped() -> None:
    adapter = XAdapter()
    body = {"data": {"event_uuid": "-2781149976877970683", "event_type": "post.create", "filter": {"user_id": "1"},
                     "payload": {"id": "1", "text": "hi"}}}

    assert adapter.parse(body) == []
    assert adapter.skipped == [("data", "X Activity API event 'post.create': not supported")]


def _without(tweet: dict, key: str) -> dict:
    return {k: v for k, v in tweet.items() if k != key}


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: {"for_user_id": "1", "tweet_create_events": t}, "tweet_create_events must be a list"),
    (lambda t: {"for_user_id": "1", "tweet_create_events": [_without(t, "id_str")]}, "has no id_str"),
    (lambda t: [{**t, "created_at": "2017-05-24"}], "not in the X v1.1 format"),
    (lambda t: [{**t, "user": "RobotPrincessFi"}], r"\[0\]\.user is not an object"),
    (lambda t: [{**t, "user": {**t["user"], "id_str": None, "id": 8.152790702419558e17}}], "not an id"),
    (lambda t: {"for_user_id": 8.152790702419558e17, "tweet_create_events": [t]}, "for_user_id is missing or not"),
    (lambda t: {"for_user_id": "1", "tweet_delete_events": [{"timestamp_ms": "1"}]}, "has no status object"),
    (lambda t: {"for_user_id": "1", "direct_message_events": [{"type": "message_create", "id": "1"}]},
     "has no message_create"),
    (lambda t: {"for_user_id": "1", "direct_message_events": [], "users": []}, "`users` must be an object"),
    (lambda t: {"event": {"type": "message_create", "id": "1", "created_timestamp": "1",
                          "message_create": {"sender_id": "1", "message_data": {"text": "x"}}}},
     "recipient_id is missing"),
    (lambda t: {"statuses": "none"}, "must be a list of tweets"),
])
def test_malformed_v1_payloads_raise(make, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        XAdapter().parse(make(tweet_parser_tweet("A) This is")))


def test_reparse_of_a_webhook_body_is_identical() -> None:
    body = json.dumps(dm_envelope()).encode()

    assert XAdapter().parse(body) == XAdapter().parse(body)


# -- IBM customer-care dataset --------------------------------------------------------------------------------------


def test_ibm_customer_care_threads_are_real_tweet_ids_but_not_a_payload() -> None:
    # A dataset layout, not something X delivers (see channels/recorded/ibm-twitter-customer-care/README.md): it is
    # not parsed, but its 62 turns check snowflake_time against real tweets with known times, to the second.
    conversations = json.loads(recorded("ibm-twitter-customer-care/conversations_sample.json"))
    turns = [turn for c in conversations for turn in c["dialogContent"]]

    assert len(conversations) == 25
    assert len(turns) == 62
    for turn in turns:
        expected = dt.datetime.fromisoformat(turn["datetime"])
        assert snowflake_time(turn["tweet_ID"]).replace(microsecond=0) == expected
    for conversation in conversations:  # the agent's final tweet has no time of its own: its id still tells it
        last_turn = max(dt.datetime.fromisoformat(t["datetime"]) for t in conversation["dialogContent"])
        assert snowflake_time(conversation["agentURL"]["tweet_ID"]) > last_turn
    with pytest.raises(PayloadError, match="has no id_str"):
        XAdapter().parse(recorded("ibm-twitter-customer-care/conversations_sample.json"))
