"""A small grammar of children's stories: the training text of nbinfer's bundled default model.

Every sentence here is written for this project and released with it under the Apache-2.0 license,
so the model trained on it carries no third-party text. The grammar is deliberately small (a few
hundred words, five plot shapes) so that a ~2M-parameter model trained for minutes on a CPU learns
it well enough to write readable English.

    rng = random.Random(0)
    story(rng)              -> "Once upon a time, there was a little girl named Lily. ..."
    chat_example(rng)       -> [{"role": "user", ...}, {"role": "assistant", ...}]
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Character:
    name: str
    kind: str          # "girl", "dog", ...
    adjective: str     # "little", "brave", ...
    subj: str          # she / he
    obj: str           # her / him
    poss: str          # her / his

    @property
    def intro(self) -> str:
        return f"{_a(self.adjective)} {self.adjective} {self.kind} named {self.name}"

    @property
    def kind_phrase(self) -> str:
        return f"{_a(self.kind)} {self.kind}"


GIRLS = ["Lily", "Mia", "Anna", "Sara", "Emma", "Lucy", "Zoe", "Ella", "Rosa", "Nina", "Amy", "Kate"]
BOYS = ["Tom", "Max", "Ben", "Leo", "Sam", "Jack", "Tim", "Finn", "Oscar", "Eli", "Noah", "Jake"]
PEOPLE = {"girl": "she", "boy": "he"}
ANIMALS = ["cat", "dog", "bunny", "bird", "fox", "bear", "duck", "frog", "mouse", "owl", "turtle",
           "lion", "pig", "squirrel", "puppy", "kitten"]
ADJECTIVES = ["little", "small", "happy", "curious", "brave", "shy", "kind", "clever", "sleepy",
              "silly", "friendly", "young"]
PLACES = ["in a small house near the woods", "on a big farm", "in a quiet town by the sea",
          "in a tall tree in the park", "near a sunny meadow", "in a busy city",
          "in a warm little den under a hill", "by a clear blue lake", "in a cozy house with a red door",
          "at the edge of a green forest"]
COLORS = ["red", "blue", "green", "yellow", "shiny", "big", "soft", "pretty", "tiny", "purple"]
OBJECTS = ["ball", "kite", "box", "book", "hat", "boat", "key", "flower", "drum", "shell", "map",
           "lamp", "ribbon", "star", "blanket", "teddy bear", "toy car", "cup", "bell", "rock"]
HIDING = ["under the bed", "behind the door", "in the garden", "under a big leaf", "near the old tree",
          "inside a basket", "by the river", "under the table", "on top of the shelf", "in the tall grass"]
GOALS = [("climb the big hill", "reached the top of the hill", "They could see the whole town from there."),
         ("see the sea", "came to the sea", "The water sparkled in the sun."),
         ("find the end of the rainbow", "found where the rainbow touched the ground",
          "It was full of bright flowers."),
         ("visit the old castle", "arrived at the old castle", "It had tall towers and a big gate."),
         ("cross the wide river", "crossed the wide river", "The other side was green and quiet."),
         ("find the biggest apple tree", "found the biggest apple tree",
          "Its apples were red and sweet."),
         ("see the stars from the hill", "sat on the hill under the stars",
          "The sky was full of tiny lights.")]
TROUBLES = [("was stuck in a bush", "pulled the branches apart", "got out of the bush"),
            ("was very hungry", "shared some bread", "ate the bread and felt strong"),
            ("had hurt a leg", "made a soft bed of leaves", "could rest and feel better"),
            ("was lost", "showed the way home", "found the way home"),
            ("was cold", "gave a warm scarf", "felt warm again"),
            ("could not reach a berry", "climbed up and picked it", "ate the sweet berry")]
SKILLS = [("swim", "jumped into the water and sank", "kicked and paddled in the shallow water", "swam across the pond"),
          ("ride a bike", "fell off the bike", "held on tight and pushed the pedals", "rode all the way down the road"),
          ("bake a cake", "burned the first cake", "watched the oven with care", "baked a sweet, soft cake"),
          ("paint a picture", "made a big mess", "painted slowly and carefully", "painted a beautiful sun"),
          ("fly a kite", "let the kite fall in the mud", "ran fast against the wind", "flew the kite high in the sky"),
          ("sing a song", "forgot the words", "sang the song again and again", "sang the whole song with a clear voice"),
          ("read a book", "mixed up the letters", "read one page at a time", "read the whole book")]
HELPERS = ["mom", "dad", "grandma", "grandpa", "teacher"]
FEELINGS_SAD = ["sad", "upset", "worried", "unhappy"]
FEELINGS_HAPPY = ["happy", "glad", "excited", "proud"]
WEATHER = [("a big storm", "loud thunder", "the rain stopped"),
           ("a strong wind", "the wind howling outside", "the wind became calm"),
           ("a dark night", "strange sounds in the dark", "the sun came up")]
OPENINGS = ["Once upon a time, there was", "One sunny day, there was", "Long ago, there was",
            "There once was"]


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def character(rng: random.Random, avoid: str = "") -> Character:
    names = GIRLS + BOYS
    while True:
        name = rng.choice(names)
        if name != avoid:
            break
    she = name in GIRLS
    kind = rng.choice(["girl" if she else "boy"] * 3 + ANIMALS)
    subj = "she" if she else "he"
    return Character(name, kind, rng.choice(ADJECTIVES), subj, "her" if she else "him", "her" if she else "his")


def _object(rng: random.Random) -> str:
    return f"{rng.choice(COLORS)} {rng.choice(OBJECTS)}"


# --- plots: each returns a list of sentences ------------------------------------------------------

def plot_lost(rng, x: Character, y: Character) -> list[str]:
    thing = _object(rng)
    noun = thing.split(" ", 1)[1]
    spots = rng.sample(HIDING, 3)
    return [
        f"{x.name} had {_a(thing)} {thing}, and {x.subj} loved it very much.",
        f"One day, {x.name} could not find the {noun}.",
        f"{_cap(x.subj)} looked {spots[0]}, but it was not there.",
        f"{_cap(x.subj)} looked {spots[1]}, but it was not there either.",
        f"{x.name} felt {rng.choice(FEELINGS_SAD)} and sat down.",
        f"Then {y.intro} came by.",
        f"\"Why are you sad?\" asked {y.name}.",
        f"\"I lost my {noun},\" said {x.name}.",
        f"\"Let me help you,\" said {y.name}.",
        f"They looked {spots[2]} together.",
        f"At last, {y.name} found the {noun}!",
        f"{x.name} was so {rng.choice(FEELINGS_HAPPY)}. \"Thank you, {y.name}!\" {x.subj} said.",
        rng.choice([f"From that day on, {x.name} and {y.name} were best friends.",
                    f"{x.name} learned that a friend can make a hard day better.",
                    f"After that, {x.name} kept the {noun} in a safe place."]),
    ]


def plot_journey(rng, x: Character, y: Character) -> list[str]:
    goal, reached, view = rng.choice(GOALS)
    trouble, fix, result = rng.choice(TROUBLES)
    helper = rng.choice(HELPERS)
    return [
        f"{x.name} wanted to {goal}.",
        f"{_cap(x.poss)} {helper} said, \"Be careful, and come home before dark.\"",
        f"So {x.name} set off on a bright morning.",
        f"On the way, {x.subj} met {y.intro}.",
        f"{y.name} {trouble}.",
        f"{x.name} {fix}, and {y.name} {result}.",
        f"\"Thank you,\" said {y.name}. \"Can I come with you?\"",
        f"\"Yes, of course!\" said {x.name}.",
        f"The two friends walked together, and soon they {reached}.",
        view,
        f"{x.name} and {y.name} felt {rng.choice(FEELINGS_HAPPY)}.",
        rng.choice([f"When {x.name} got home, {x.subj} told {x.poss} {helper} all about the day.",
                    f"{x.name} learned that helping others makes every trip better.",
                    "They promised to go on another adventure soon."]),
    ]


def plot_share(rng, x: Character, y: Character) -> list[str]:
    thing = _object(rng)
    noun = thing.split(" ", 1)[1]
    helper = rng.choice(HELPERS)
    return [
        f"{x.name} and {y.name} were playing in the park.",
        f"They saw {_a(thing)} {thing} on the grass.",
        f"\"It is mine!\" said {x.name}. \"No, it is mine!\" said {y.name}.",
        f"They both pulled the {noun}, and it fell into a puddle.",
        f"Now the {noun} was wet and dirty, and both friends felt {rng.choice(FEELINGS_SAD)}.",
        f"{_cap(x.poss)} {helper} came over and said, \"If you share, you can both have fun.\"",
        f"{x.name} looked at {y.name}. \"I am sorry,\" {x.subj} said.",
        f"\"I am sorry too,\" said {y.name}.",
        f"They cleaned the {noun} and took turns playing with it.",
        "They laughed and played until the sun went down.",
        rng.choice(["They learned that sharing is better than fighting.",
                    f"From that day on, {x.name} and {y.name} always shared their toys.",
                    "Playing together was much more fun than playing alone."]),
    ]


def plot_learn(rng, x: Character, y: Character) -> list[str]:
    skill, fail, practice, success = rng.choice(SKILLS)
    return [
        f"{x.name} wanted to learn to {skill}.",
        f"The first time {x.subj} tried, {x.subj} {fail}.",
        f"{x.name} felt {rng.choice(FEELINGS_SAD)}. \"I cannot do it,\" {x.subj} said.",
        f"{y.name}, {_a(y.kind)} {y.kind} who lived nearby, said, \"Do not give up. Try again!\"",
        f"So {x.name} practiced. Every day, {x.subj} {practice}.",
        f"It was hard, but {x.subj} did not stop.",
        f"One morning, {x.name} {success}.",
        f"\"I did it!\" {x.subj} shouted.",
        f"{y.name} clapped and cheered for {x.obj}.",
        rng.choice([f"{x.name} learned that practice makes things easier.",
                    f"{x.name} was very {rng.choice(FEELINGS_HAPPY)}, and {x.subj} never gave up again.",
                    "Trying again is how we learn new things."]),
    ]


def plot_storm(rng, x: Character, y: Character) -> list[str]:
    event, sound, end = rng.choice(WEATHER)
    helper = rng.choice(HELPERS)
    return [
        f"One night, there was {event}.",
        f"{x.name} could hear {sound}, and {x.subj} was scared.",
        f"{_cap(x.subj)} pulled {x.poss} blanket up to {x.poss} nose.",
        f"Then {x.subj} went to find {x.poss} {helper}.",
        f"\"I am scared,\" said {x.name}.",
        f"{_cap(x.poss)} {helper} gave {x.obj} a big hug. \"You are safe here,\" {helper} said.",
        f"They read a story together, and {x.name} felt calm.",
        f"Soon {x.name} fell asleep.",
        f"In the morning, {end}, and {y.name} came to play.",
        f"{x.name} told {y.name} about the night.",
        rng.choice([f"\"I was scared, but I was brave too,\" said {x.name}.",
                    "They played outside all day in the fresh air.",
                    f"{x.name} learned that a hug can chase the fear away."]),
    ]


PLOTS = {"lost": plot_lost, "journey": plot_journey, "share": plot_share, "learn": plot_learn,
         "storm": plot_storm}
THEMES = {"lost": "a lost toy", "journey": "an adventure", "share": "sharing",
          "learn": "learning something new", "storm": "being brave"}


def story(rng: random.Random, x: Character | None = None, plot: str | None = None) -> str:
    x = x or character(rng)
    y = character(rng, avoid=x.name)
    plot = plot or rng.choice(list(PLOTS))
    lines = [f"{rng.choice(OPENINGS)} {x.intro}.",
             f"{_cap(x.subj)} lived {rng.choice(PLACES)}."]
    lines += PLOTS[plot](rng, x, y)
    lines.append("The end.")
    return " ".join(lines)


GREETINGS = ["Hello!", "Hi!", "Hello there.", "Hi, who are you?", "What can you do?", "Who are you?"]
GREETING_REPLIES = [
    "Hello! I am a small story model. Ask me for a story about an animal or a child, and I will tell you one.",
    "Hi! I am a tiny model that knows how to tell short stories. Ask me for a story about a cat, a dog, or a brave girl.",
    "I am a small model trained on simple stories. I can tell you a story about friends, sharing, or an adventure.",
]
SYSTEMS = ["You are a helpful assistant.", "You are a storyteller for children.",
           "You tell short, kind stories."]


def chat_example(rng: random.Random) -> list[dict]:
    """One conversation: a greeting, or a request for a story that the reply follows."""
    messages = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    if rng.random() < 0.1:
        messages += [{"role": "user", "content": rng.choice(GREETINGS)},
                     {"role": "assistant", "content": rng.choice(GREETING_REPLIES)}]
        return messages
    x = character(rng)
    plot = rng.choice(list(PLOTS))
    ask = rng.choice([
        f"Tell me a story about {x.kind_phrase} named {x.name}.",
        f"Write a short story about {x.kind_phrase}.",
        f"Can you tell me a story about {x.name} the {x.kind}?",
        f"Tell me a story about {THEMES[plot]}.",
        f"Please write a story about {x.kind_phrase} and {THEMES[plot]}.",
        "Tell me a story.",
    ])
    messages += [{"role": "user", "content": ask},
                 {"role": "assistant", "content": story(rng, x, plot)}]
    return messages
