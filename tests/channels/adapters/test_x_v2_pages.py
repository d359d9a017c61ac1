"""X API v2: every event of every recorded v2 page, and the pages that hold no tweets.

Files: channels/recorded/tweepy/x_api_v2/ and channels/recorded/python-twitter/x_api_v2/. Rows are
(external id, kind, author id, author handle, thread key, reply-to, text); the tweepy pages were recorded without
`expansions`, so they have no author.
"""

import json
import pathlib
import re

import pytest

from channels.adapters.base import EventKind
from channels.adapters.x import XAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
MENTION = EventKind.MENTION


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def rows(path: str) -> list[tuple]:
    return [(e.external_id, e.kind, e.author.external_id if e.author else None, e.author.handle if e.author else None,
             e.thread_key, e.reply_to_id, e.text) for e in XAdapter().parse(recorded(path))]


QUOTE_TWEETS = [
    ('1458146351036841988', MENTION, None, None, '1458146351036841988', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1456942863447588871', MENTION, None, None, '1456942863447588871', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1453474504928280580', MENTION, None, None, '1453474504928280580', '',
     ('We ask the Twitter administration to support the account of Mr. Hussein Al-Ezzi, '
       'after activists hacked the account\n\n Hope for a quick reply\n They made it '
       'clear that brother Hussein Al-Ezzi did not violate the human rights conditions '
       'and standards on Twitter\n@hussinalezzi5 https://t.co/5X3p8MkMJM '
       'https://t.co/uxy1CNOlOG')),
    ('1452401301044797451', MENTION, None, None, '1452401301044797451', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1452329441200386056', MENTION, None, None, '1452329441200386056', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1451925842486079488', MENTION, None, None, '1451925842486079488', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1450521278658482182', MENTION, None, None, '1450521278658482182', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1447635166986375173', MENTION, None, None, '1447635166986375173', '',
     ('RT @TwitterAPI: Twitter API v2: Early Access released\n\nToday we announced Early '
       'Access to the first endpoints of the new Twitter API!\n\n#Twi…')),
    ('1447395402676793345', MENTION, None, None, '1447395402676793345', '',
     'Hello #Twitter https://t.co/1GPaAuDXKi'),
]


SEARCH_RECENT = [
    ('1578516068309794817', MENTION, None, None, '1578516068309794817', '', '2022-10-07 22:42:12.637103 tweepy'),
    ('1578515564971970560', MENTION, None, None, '1578515564971970560', '', '2022-10-07 22:40:12.640354 tweepy'),
    ('1578515061600964608', MENTION, None, None, '1578515061600964608', '', '2022-10-07 22:38:12.636554 tweepy'),
    ('1578514558372618243', MENTION, None, None, '1578514558372618243', '', '2022-10-07 22:36:12.640460 tweepy'),
    ('1578514055010324480', MENTION, None, None, '1578514055010324480', '', '2022-10-07 22:34:12.636539 tweepy'),
    ('1578513551664173057', MENTION, None, None, '1578513551664173057', '', '2022-10-07 22:32:12.637974 tweepy'),
    ('1578513048372797440', MENTION, None, None, '1578513048372797440', '', '2022-10-07 22:30:12.636684 tweepy'),
    ('1578512545039585281', MENTION, None, None, '1578512545039585281', '', '2022-10-07 22:28:12.636547 tweepy'),
    ('1578512041748627456', MENTION, None, None, '1578512041748627456', '', '2022-10-07 22:26:12.636589 tweepy'),
    ('1578511538419212288', MENTION, None, None, '1578511538419212288', '', '2022-10-07 22:24:12.640234 tweepy'),
]


TWEETS_LOOKUP_MULTI = [
    ('1293593516040269825', MENTION, None, None, '1293593516040269825', '',
     ('It’s finally here! 🥁 Say hello to the new #TwitterAPI.\n\nWe’re rebuilding the '
       'Twitter API v2 from the ground up to better serve our developer community. And '
       'today’s launch is only the beginning.\n\nhttps://t.co/32VrwpGaJw '
       'https://t.co/KaFSbjWUA8')),
    ('1293595870563381249', MENTION, None, None, '1293595870563381249', '',
     ('Twitter API v2: Early Access released\n\nToday we announced Early Access to the '
       'first endpoints of the new Twitter API!\n\n#TwitterAPI #EarlyAccess #VersionBump '
       'https://t.co/g7v3aeIbtQ')),
]


HOME_TIMELINE_WITH_USERS = [
    ('1524796546306478083', MENTION, '2244994945', 'TwitterDev', '1524796546306478083', '',
     ('Today marks the launch of Devs in the Details, a technical video series made for '
       'developers by developers building with the Twitter API.  🚀nnIn this premiere '
       'episode, @jessicagarson walks us through how she built @FactualCat '
       '#WelcomeToOurTechTalkn⬇️nnhttps://t.co/nGa8JTQVBJ')),
    ('1524468552404668416', MENTION, '2244994945', 'TwitterDev', '1524468552404668416', '',
     ('📢 Join @jessicagarson @alanbenlee and @i_am_daniele tomorrow, May 12  | 5:30 ET / '
       '2:30pm PT as they discuss the future of bots https://t.co/sQ2bIO1fz6')),
    ('1523757705436958720', MENTION, '2244994945', 'TwitterDev', '1523757705436958720', '',
     ('Do you make bots with the Twitter API? 🤖nnJoin @jessicagarson @alanbenlee and '
       '@iamdaniele on Thursday, May 12  | 5:30 ET / 2:30pm PT as they discuss the future '
       'of bots and answer any questions you might have. 🎙📆⬇️nnhttps://t.co/2uVt7hCcdG')),
    ('1522642324781633536', MENTION, '2244994945', 'TwitterDev', '1522642324781633536', '',
     ('If you’d like to apply, or would like to nominate someone else for the program, '
       'please feel free to fill out the following form:nnhttps://t.co/LUuWj24HLu')),
    ('1522642323535847424', MENTION, '2244994945', 'TwitterDev', '1522642323535847424', '',
     ('We’ve gone into more detail on each Insider in our forum post. nnJoin us in '
       'congratulating the new additions! 🥳nnhttps://t.co/0r5maYEjPJ')),
]


MENTIONS_WITH_CREATED_AT = [
    ('1364398068313903104', MENTION, None, None, '1364398068313903104', '',
     ('@Twitter should consider supporting #VoiceMessaging support for @TweetDeck too\n\n'
       '@TwitterSupport \n@TwitterDev')),
    ('1364377794327633925', MENTION, None, None, '1364377794327633925', '',
     ('@sugan2424 @TwitterDev @threadreaderapp You have TweetDeck for that, you can load '
       'up your twitter lists in different columns and keep track of live updates.')),
    ('1364377404156772352', MENTION, None, None, '1364377404156772352', '',
     ('@TwitterDev What kind of tweet / attachment is this?\nIt looks like a poll with '
       'an image but the buttons allow you to create a new, slightly different tweet '
       'based on what you choose. The API returns no attachments - but the tweet has '
       'pre-populated tweet buttons. https://t.co/PCaEj7KRWi')),
    ('1364373969852366849', MENTION, None, None, '1364373969852366849', '',
     ('• Thirdly, that @Twitter, @Twittersafety, @Twitterdev, and @jack, et. al. have '
       'done a pretty good thing by showing the restraint to simply *inform* the userbase '
       'of the presence of hacking "down the line", rather than squash it AS a spectre.')),
    ('1364367885582352386', MENTION, None, None, '1364367885582352386', '',
     ('@Twitter @TwitterSafety @TwitterDev @jack Furthermore to that classic '
       'reversal,\n\n•• Labeling the forbidden serves to root the forbidden IN lexicon, '
       'making it a foolhardy pursuit to dispel spectres of doubt by bringing them up in '
       'broachful respite.\n\n•• You stand on the shoulders of "hackers", all the way '
       'down.')),
]


TWEEPY_MENTIONS = [
    ('1578516295611748353', MENTION, None, None, '1578516295611748353', '',
     ('@Twitter @TwitterSupport this is my ENTIRE feed, why do you think i want this. '
       'respond to my ticket. https://t.co/W5GxALkkZd')),
    ('1578516273537118209', MENTION, None, None, '1578516273537118209', '',
     ('Good @WilliamCohan financial dissection of @elonmusk’s @Twitter  deal—saying his '
       'choice was to pay “$12 billion-or-so for nothing, or pay another $10 billion or '
       'so and own 78.8% of a private Twitter and control everything.” Also: nice '
       'headline, @PuckNews. https://t.co/jBgJzKrpZd')),
    ('1578516249856077825', MENTION, None, None, '1578516249856077825', '',
     ('@KeepusAllFree @AmoonRawh @FatefulHaven @jakeshieldsajj @Twitter Also explains '
       'why they’re not even doing trials on their boosters. They are laughing at how '
       'easily they’ve convinced ppl of bs https://t.co/gUCbF0ppL7')),
    ('1578516242867945475', MENTION, None, None, '1578516242867945475', '',
     '@MercyKnifed @Twitter what the fuck???'),
    ('1578516230448631808', MENTION, None, None, '1578516230448631808', '',
     ("@KateTalksTruth @elonmusk Can't @twitter be liable for vaccine injuries if they "
       'censor information from a medical doctor like this? Hmmmmm')),
    ('1578516220231397376', MENTION, None, None, '1578516220231397376', '',
     '@Twitter make 🤨 an available reaction emoji in dms'),
    ('1578516190862794753', MENTION, None, None, '1578516190862794753', '',
     '@itsJeffTiedrich @twitter where is the false information banner.'),
    ('1578516149339574274', MENTION, None, None, '1578516149339574274', '',
     "Hate to say it, but that's a point in Zuck's corner @Twitter"),
    ('1578516142770909184', MENTION, None, None, '1578516142770909184', '',
     '@twitter bring back minimized playback for video'),
    ('1578516107798884353', MENTION, None, None, '1578516107798884353', '',
     ('So, I am down on @elonmusk because of @Twitter purchase, but this is post is BS. '
       'https://t.co/g9y9ogoiSO')),
]



@pytest.mark.parametrize(("path", "expected"), [
    ("tweepy/x_api_v2/quote_tweets.json", QUOTE_TWEETS),
    ("tweepy/x_api_v2/search_recent.json", SEARCH_RECENT),
    ("tweepy/x_api_v2/tweets_lookup_multi.json", TWEETS_LOOKUP_MULTI),
    ("tweepy/x_api_v2/tweet_lookup_single.json", TWEETS_LOOKUP_MULTI[:1]),  # `data` is one object here
    ("python-twitter/x_api_v2/home_timeline_with_users_include.json", HOME_TIMELINE_WITH_USERS),
    ("python-twitter/x_api_v2/users_mentions_with_created_at.json", MENTIONS_WITH_CREATED_AT),
    ("tweepy/x_api_v2/users_mentions.json", TWEEPY_MENTIONS),
])
def test_every_event_of_a_recorded_page(path: str, expected: list[tuple]) -> None:
    assert rows(path) == expected


def test_home_timeline_every_tweet_and_its_entities_undone() -> None:
    body = json.loads(recorded("tweepy/x_api_v2/home_timeline_reverse_chronological.json"))
    events = [e for e in XAdapter().parse(body) if e.kind != EventKind.EDIT]

    assert len(events) == len(body["data"]) == 98
    for event, tweet in zip(events, body["data"], strict=True):
        first = tweet["edit_history_tweet_ids"][0]
        assert (event.external_id, event.kind, event.author, event.thread_key, event.reply_to_id) == (
            first, MENTION, None, first, "")
        assert event.text == tweet["text"].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    # X escapes `&`, `<` and `>` in tweet text; events carry the text as written.
    assert sum(bool(re.search("&(amp|lt|gt);", t["text"])) for t in body["data"]) == 8
    assert not [e for e in events if re.search("&(amp|lt|gt);", e.text)]


@pytest.mark.parametrize("path", ["tweepy/x_api_v2/users_me.json", "tweepy/x_api_v2/users_by_usernames.json"])
def test_user_lookups_hold_no_tweets(path: str) -> None:
    adapter = XAdapter()

    assert adapter.parse(recorded(path)) == []
    assert {why for _, why in adapter.skipped} == {"a user object, not a tweet"}
