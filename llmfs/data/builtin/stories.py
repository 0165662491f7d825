"""`builtin:stories`: short, simple English stories from a hand-written grammar, offline and deterministic.

Each story picks a plot (a lost toy, a new friend, a fear, a trip, sharing, helping, learning a skill, a gift,
a mistake owned up to, a day of bad weather), a hero, a friend, a grown-up, a place and an object, then walks
the plot's beats: a beginning, a problem with its cause, dialogue, what the characters do about it, and an
ending with its consequence. Every beat has several phrasings and almost every sentence carries a slot, so the
corpus has few exact duplicate sentences (`llmfs data stats builtin:stories` reports the rate).

Splits: story `i` of a seed is generated from its own `random.Random((seed, i))`; a story belongs to the
validation split when the sha256 of its text falls in the lowest `valid_fraction` of the hash space. So the same
text can never be in both splits, and train/valid are disjoint by construction (the usual approach of
splitting by index would let the grammar produce an identical story on both sides).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator

from llmfs.data.builtin import words as W
from llmfs.data.builtin.split import wanted


@dataclasses.dataclass(frozen=True)
class Character:
    name: str  # "Lily", "Spot"
    intro: str  # "a little girl named Lily"
    he: str  # he / she

    @property
    def his(self) -> str:
        return "his" if self.he == "he" else "her"

    @property
    def him(self) -> str:
        return "him" if self.he == "he" else "her"


def _character(rng: random.Random, exclude: str = "") -> Character:
    while True:
        roll = rng.random()
        if roll < 0.35:
            name, he, what = rng.choice(W.GIRLS), "she", rng.choice(("girl", "girl", "kid"))
        elif roll < 0.7:
            name, he, what = rng.choice(W.BOYS), "he", rng.choice(("boy", "boy", "kid"))
        else:
            kind, adjectives, names = rng.choice(W.ANIMALS)
            name, what = rng.choice(names), kind
            he = "she" if name in W.SHE_ANIMAL_NAMES else "he"
        if name != exclude:
            adjective = rng.choice(("little", "young", "small", "kind", "curious", "cheerful", "brave", "shy"))
            if what not in ("girl", "boy", "kid"):
                adjective = rng.choice(adjectives)
            return Character(name, f"a {adjective} {what} named {name}", he)


class _Story:
    """Slots shared by every sentence of one story, and `say(*phrasings)` to pick one and fill it."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.hero = _character(rng)
        self.friend = _character(rng, exclude=self.hero.name)
        self.adult, self.adult_he = rng.choice(W.ADULTS)
        self.place, self.hiding, self.sight = rng.choice(W.PLACES)
        self.obj, self.obj_adj = rng.choice(W.OBJECTS)
        self.sentences: list[str] = []

    def slots(self) -> dict[str, str]:
        h, f = self.hero, self.friend
        return {"hero": h.name, "he": h.he, "He": h.he.capitalize(), "his": h.his, "His": h.his.capitalize(),
                "him": h.him, "friend": f.name, "fhe": f.he, "Fhe": f.he.capitalize(), "fhis": f.his,
                "fhim": f.him, "adult": self.adult, "Adult": self.adult[0].upper() + self.adult[1:],
                "ahe": self.adult_he, "place": self.place, "hiding": self.hiding, "sight": self.sight,
                "obj": self.obj, "adj": self.obj_adj, "good": self.rng.choice(W.FEELINGS_GOOD),
                "bad": self.rng.choice(W.FEELINGS_BAD), "game": self.rng.choice(W.GAMES),
                "food": self.rng.choice(W.FOODS), "color": self.rng.choice(W.COLORS)}

    def say(self, *phrasings: str, **extra: str) -> None:
        text = self.rng.choice(phrasings).format(**self.slots(), **extra)
        self.sentences.append(text[0].upper() + text[1:])

    def then(self, *phrasings: str, **extra: str) -> None:
        """A middle beat: sometimes led by a connective ("Soon, ...") for variety."""
        self.say(*phrasings, **extra)
        last = self.sentences[-1]
        if self.rng.random() < 0.3 and not last.startswith(('"', "But", "Then", "So ", "Soon", "Finally",
                                                           "At last", "Just then", "Suddenly", "One ")):
            lead = self.rng.choice(CONNECTIVES)
            self.sentences[-1] = f"{lead}, {last[0].lower() if not last.split()[0] in NAMES else last[0]}{last[1:]}"

    def text(self) -> str:
        return " ".join(self.sentences)


def _opening(s: _Story) -> None:
    s.say("Once upon a time, there was {intro}.", "One day, {intro} went to {place}.",
          "There was once {intro} who loved to play.", "Long ago, {intro} lived near {place}.",
          "{intro} woke up early one morning.", "In a small town, there lived {intro}.",
          intro=s.hero.intro)
    s.say("{He} liked {game} and {food} more than anything.", "Every day, {hero} played {game} at {place}.",
          "{hero} had a {adj} {obj} that {he} took everywhere.", "At {place}, {hero} could see {sight}.",
          "{hero} always wore a {color} coat, even in the sun.", "{hero} was a {good} little one.")


def _ending(s: _Story, lesson: tuple[str, ...], **extra: str) -> None:
    s.say(*lesson, **extra)
    if s.rng.random() < 0.8:
        s.say("From that day on, {hero} and {friend} were the best of friends.",
              "That night, {hero} fell asleep with a smile.", "{hero} felt {good} all the way home.",
              "And {hero} never forgot that day at {place}.", "The sun went down over {place}, and {hero} was {good}.",
              "{Adult} gave {hero} a big hug and some {food}.", "It was the best day {hero} ever had.")


def lost_object(s: _Story) -> None:
    _opening(s)
    s.then("One afternoon, {hero} took {his} {adj} {obj} to {place}.", "{hero} played with {his} {obj} at {place}.")
    s.then("But when it was time to go home, the {obj} was gone!", "Then {he} looked down and saw that {his} {obj} "
          "was missing.", "Suddenly, {hero} could not find the {obj} anywhere.")
    s.then("{hero} felt {bad}, because the {obj} was a gift from {adult}.",
          "{He} was {bad} because {he} loved that {obj} very much.", "Tears filled {hero}'s eyes.")
    s.then('"Where is my {obj}?" cried {hero}.', '"Oh no, I lost my {obj}!" said {hero}.',
          '"Has anyone seen my {adj} {obj}?" asked {hero}.')
    s.then("{friend} heard {him} and came to help.", "Just then, {friend} walked by and asked what was wrong.",
          "{friend} saw that {hero} was {bad}.")
    s.then('"Do not worry, we will find it together," said {friend}.', '"I will help you look," said {friend}.',
          '"Let us look all over {place}," {friend} said with a smile.')
    s.then("{hero} and {friend} looked near the gate and along every path of {place}.", "They searched high and low around {place}.",
          "{friend} checked every corner of {place}, one by one.")
    s.then("At last, {friend} found the {obj} {hiding}.", "Then {hero} saw something {adj} {hiding}. It was the "
          "{obj}!", "Finally, {hero} spotted the {obj} {hiding}.")
    s.then('"Thank you, {friend}!" said {hero}, and {he} hugged the {obj} tight.',
          "{hero} jumped up and down because {he} was so {good}.")
    _ending(s, ("{hero} learned to keep {his} things close, and to thank a good friend.",
                "Now {hero} always puts the {obj} in {his} bag before {he} goes home.",
                "{hero} learned that a friend makes any problem smaller."))


def new_friend(s: _Story) -> None:
    _opening(s)
    s.then("One day at {place}, {hero} saw {intro} sitting alone.", "At {place}, {hero} met {intro}.",
          intro=s.friend.intro)
    s.then("{friend} looked {bad}, because {fhe} did not know anyone.", "{friend} was new in town and felt {bad}.",
          "{friend} wanted to play, but {fhe} was too shy to ask.")
    s.then('"Hello, my name is {hero}. Do you want to play {game}?" asked {hero}.',
          '"Hi, I am {hero}. Would you like to play with me?" said {hero}.',
          '"You can play with my {obj} if you like," said {hero}.')
    s.then('"Yes, please!" said {friend}, and {fhe} smiled for the first time.',
          "{friend} nodded and said, \"I would love that.\"")
    s.then("They played {game} until the sky turned orange.", "They ran, laughed and played {game} all afternoon.",
          "They shared {food} and told each other funny stories.")
    s.then("{friend} was not {bad} anymore.", "Soon {friend} felt {good} and at home at {place}.")
    _ending(s, ("{hero} learned that one kind word can make a new friend.",
                "{hero} and {friend} promised to meet at {place} again tomorrow.",
                "Being kind to someone new made {hero} feel {good} too."))


def fear(s: _Story) -> None:
    what, trigger, truth = s.rng.choice(W.FEARS)
    _opening(s)
    s.then("But {hero} was afraid of {what}.", "There was one thing {hero} did not like: {what}.", what=what)
    s.then("One evening, {hero} {trigger} and felt very {bad}.", "When {hero} {trigger}, {he} began to shake.",
          trigger=trigger)
    s.then('"I am scared of {what}," {hero} told {adult} in a small voice.', '"{Adult}, I do not like {what}," said {hero}.', what=what)
    s.then("{Adult} sat down next to {him} and held {his} hand.", "{Adult} came and gave {him} a warm hug.")
    s.then('"Here is a secret, {hero}: {truth}," said {adult}.', '"Look closely, {hero}," {adult} said, "{truth}."',
          truth=truth[0].upper() + truth[1:])
    s.then("{hero} took a deep breath and looked again.", "{hero} counted to three and tried to be brave.")
    s.then("{Adult} was right, and {hero} was not afraid anymore.", "Slowly, {his} fear of {what} went away.",
           what=what)
    _ending(s, ("{hero} learned that being brave means trying even when you are scared.",
                "Now {hero} is not afraid of {what} anymore.",
                "{hero} learned that talking about a fear makes it smaller."), what=what)


def trip(s: _Story) -> None:
    _opening(s)
    s.then("One sunny morning, {adult} said, \"Today we are going to {place}!\"",
          "On Saturday, {hero} and {adult} went on a trip to {place}.")
    s.then("{hero} was so excited that {he} could not sit still.", "{hero} packed {his} {obj} and some {food}.")
    s.then("At {place}, {hero} and {adult} saw {sight}.", "When they got to {place}, {hero} saw {sight}.")
    s.then("{hero} also met {friend}, who showed {him} the best spots.", "There {hero} made a new friend, {friend}.")
    s.then("Then it started to rain, so they hid {hiding}.", "They found something shiny {hiding}.",
          "{hero} and {friend} ate {food} and watched the clouds.")
    s.then('"This is the best day ever!" said {hero}.', '"Can we come back soon?" asked {hero}.')
    s.then("On the way home, {hero} fell asleep in the car.", "When they got home from {place}, {hero} was tired but {good}.")
    _ending(s, ("{hero} drew a picture of {place} to remember the trip.",
                "{hero} told everyone about the trip to {place}.",
                "{hero} learned that the world is full of things to see."))


def sharing(s: _Story) -> None:
    _opening(s)
    s.then("One day, {hero} got a new {adj} {obj}.", "{hero} had the best {obj} at {place}.")
    s.then("{friend} came over and asked, \"Can I play with your {obj}?\"",
          "{friend} saw the {obj} and wanted to play with it too.")
    s.then('"No, it is mine!" said {hero}, holding it tight.', "{hero} did not want to share, so {he} said no.")
    s.then("{friend} walked away from {hero} feeling {bad}.", "{friend} looked down and felt {bad}.")
    s.then("Soon {hero} was playing alone with the {obj}, and it was not much fun.", "{hero} saw {friend} sitting alone, and "
          "{his} tummy felt funny.")
    s.then("{Adult} said, \"Sharing is caring, {hero}.\"", "{hero} thought about how {friend} must feel.")
    s.then('"I am sorry, {friend}. Let us play with the {obj} together," said {hero}.',
          "{hero} ran to {friend} and said, \"You can have a turn with my {obj}.\"")
    s.then("{hero} and {friend} took turns and played {game} with the {obj}.", "Playing {game} with {friend} was much more fun than "
          "playing alone.")
    _ending(s, ("{hero} learned that sharing makes fun bigger.",
                "From then on, {hero} always shared {his} toys.",
                "{hero} learned that a toy is more fun with a friend."))


def helping(s: _Story) -> None:
    need, action, result = s.rng.choice(W.HELP_NEEDS)
    _opening(s)
    s.then("One day at {place}, {hero} saw {need}.", "While walking to {place}, {hero} found {need}.", need=need)
    s.then("Nobody else at {place} stopped to help.", "{hero} knew {he} had to do something.",
          "{hero} felt {bad} and wanted to help right away.")
    s.then("So {hero} {action}.", "{hero} asked {friend} to help, and together they {action}.", action=action)
    s.then("It was not easy, but {hero} did not give up on {need_short}.",
           "It took a long time, but {hero} was patient and gentle.",
           need_short=need.split(" who ")[0].split(" with ")[0])
    s.then("Soon {result}, and {hero} smiled.", "In the end, {result}, thanks to {hero}.", result=result)
    s.then('"You are very kind, {hero}," said {adult}.', '"Thank you for helping, {hero}," said {adult}.')
    _ending(s, ("{hero} learned that helping others feels good.",
                "{hero} felt {good} because {he} had done a kind thing.",
                "{hero} learned that small hands can do big kind things."))


def learning(s: _Story) -> None:
    skill, success, failure = s.rng.choice(W.SKILLS)
    _opening(s)
    s.then("{hero} wanted to learn to {skill}.", "More than anything, {hero} wished {he} could {skill}.",
          skill=skill)
    s.then("The first time {he} tried, {he} {failure}.", "{He} tried hard, but {he} {failure}.", failure=failure)
    s.then('"I will never learn to {skill}!" said {hero}.', "{hero} felt {bad} and wanted to stop.", skill=skill)
    s.then('"Everyone falls at first, {hero}, so try again," said {adult}.', "{friend} said, \"Do not give up, {hero}, you can do it!\"")
    s.then("So {hero} tried to {skill} again, and again, and again.", "Every day, {hero} practised at {place}.",
           skill=skill)
    s.then("One morning, {hero} {success}!", "After many tries, {hero} finally {success}.", success=success)
    s.then("{hero} was so {good} that {he} laughed out loud.", "Everyone at {place} cheered for {hero}.")
    _ending(s, ("{hero} learned that practice makes things easier.",
                "{hero} learned that trying again is how you learn.",
                "Now {hero} wants to learn something new every week."))


def gift(s: _Story) -> None:
    thing, verb = s.rng.choice(W.GIFTS)
    _opening(s)
    s.then("Tomorrow was {adult}'s birthday, and {hero} wanted to make a surprise.",
          "{hero} wanted to give {adult} a special present.")
    s.then("{hero} did not have money, so {he} decided to make {thing}.", "{hero} and {friend} decided to make "
          "{thing}.", thing=thing)
    s.then("{hero} {verb} it all afternoon, very carefully.", "{hero} {verb} it in secret, so {adult} would not see.",
          verb=verb)
    s.then("It was not perfect, but {hero} made it with love for {adult}.", "It took {hero} a long time, and {his} hands got tired.")
    s.then("The next morning, {hero} gave the present to {adult}.", "At breakfast, {hero} said, \"Surprise!\"")
    s.then('"Oh, {hero}, this is beautiful!" said {adult}.', "{Adult} smiled so wide and gave {hero} a hug.")
    _ending(s, ("{hero} learned that the best gifts come from the heart.",
                "{Adult} kept {hero}'s gift on the shelf for everyone to see.",
                "{hero} felt {good} because {adult} was so happy."))


def mistake(s: _Story) -> None:
    thing = s.rng.choice(W.BREAKABLES)
    _opening(s)
    s.then("One day, {hero} was playing {game} inside the house.", "{hero} was throwing {his} {obj} in the "
          "kitchen.")
    s.then("With a loud crash, {hero} knocked over {adult}'s {thing}, and it broke.", "All of a sudden, the {thing} "
          "slipped from {hero}'s hands and broke into pieces.", thing=thing)
    s.then("{hero} felt {bad} and wanted to hide.", "{hero} was afraid {adult} would be angry.")
    s.then("{He} thought about hiding the pieces {hiding}.", "{He} thought about saying that {friend} did it.")
    s.then("But {hero} knew that telling the truth was right.", "But lying to {adult} did not feel right to {hero}.")
    s.then('"{Adult}, I broke the {thing}. I am sorry," said {hero}.', "{hero} went to {adult} and told {him2} "
          "everything.", thing=thing, him2="him" if s.adult_he == "he" else "her")
    s.then('"Thank you for telling me the truth, {hero}," said {adult}.', "{Adult} was not angry, because {hero} was "
          "honest.")
    s.then("{hero} and {adult} cleaned up the pieces of the {thing} together.", "{hero} and {adult} glued the {thing} back together.", thing=thing)
    _ending(s, ("{hero} learned that telling the truth is always best.",
                "{hero} learned to play {game} outside, not in the kitchen.",
                "{hero} felt {good} after telling the truth."))


def weather(s: _Story) -> None:
    kind, sign = s.rng.choice(W.WEATHER)
    _opening(s)
    s.then("But one {kind} day, {sign} and {hero} had to stay inside.", "It was a {kind} morning at {place}, and {sign}.", kind=kind, sign=sign)
    s.then("{hero} could not go to {place}, and {he} felt {bad}.", '"There is nothing to do," sighed {hero}.')
    s.then("Then {friend} knocked on {hero}'s door.", "{Adult} had an idea to cheer {hero} up.")
    s.then('"Let us build a fort with blankets!" said {friend}.', '"We can bake {food}!" said {adult}.',
          '"Let us put on a puppet show," said {friend}.')
    s.then("{hero} and {friend} had so much fun that they forgot about the {kind} day.", "{hero} and {friend} laughed and played {game} inside.", kind=kind)
    s.then("Later, the sun came out and made a rainbow over {place}.", "When the {kind} weather was over, {hero} ran outside to {place}.", kind=kind)
    _ending(s, ("{hero} learned that a {kind} day can still be a good day.",
                "{hero} learned that fun can be found anywhere.",
                "Now {hero} is not {bad} when the weather is {kind}."), kind=kind)


CONNECTIVES = ("After a while", "A little later", "Before long", "That afternoon", "After that", "Right then",
               "A moment later", "In the morning", "By lunchtime", "Meanwhile", "Later that day", "Quickly",
               "Without a word", "All at once", "With a big smile", "Little by little")
NAMES = set(W.GIRLS) | set(W.BOYS) | {n for _, _, names in W.ANIMALS for n in names} | {
    a.split()[0] for a, _ in W.ADULTS if a[0].isupper()} | {"I"}

PLOTS: tuple[Callable[[_Story], None], ...] = (lost_object, new_friend, fear, trip, sharing, helping, learning,
                                                gift, mistake, weather)


def story(seed: int, index: int) -> str:
    """Story number `index` of stream `seed`: a pure function of both."""
    rng = random.Random(f"stories/{seed}/{index}")
    s = _Story(rng)
    rng.choice(PLOTS)(s)
    return s.text()


def generate(split: str = "train", seed: int = 0, size: int = 2_000_000, valid_fraction: float = 0.05,
             n: int | None = None) -> Iterator[dict[str, str]]:
    """Records `{"text": story}` of one split.

    `size` is the size of the whole corpus in characters, both splits together, so the validation split is
    about `valid_fraction` of it; `n`, when given, is instead the number of stories of the requested split.
    """
    produced = chars = index = 0
    while (produced < n) if n is not None else (chars < size):
        text = story(seed, index)
        index += 1
        chars += len(text) + 1
        if wanted(text, split, valid_fraction):
            produced += 1
            yield {"text": text}
