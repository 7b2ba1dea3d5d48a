"""A hand-written seed taxonomy of task types and domains: the coarse granularity of the default tags.

Each entry is ``tag: description``; the description (not the tag) is embedded to match queries, so a
short, readable tag can stand for a family of phrasings.
"""

from __future__ import annotations

TASK_TYPES: dict[str, str] = {
    "coding": "write a program code function script in python javascript java c++ sql",
    "debugging": "fix the bug error exception in this code why does my program crash",
    "code explanation": "explain what this code snippet does line by line",
    "math": "solve the equation calculate compute the number arithmetic algebra",
    "math word problem": "how many apples does he have left if she buys more word problem",
    "logic puzzle": "riddle puzzle brain teaser logical reasoning deduce",
    "translation": "translate this sentence into french spanish german chinese language",
    "grammar correction": "correct the grammar spelling and punctuation of this sentence",
    "rewriting": "rewrite paraphrase rephrase this text to make it more formal or concise",
    "summarization": "summarize this article text paragraph into a short summary",
    "classification": "classify categorize label the following items into categories",
    "information extraction": "extract the names dates entities keywords from the text",
    "sentiment analysis": "is the sentiment of this review positive or negative",
    "creative writing": "write a short story fiction narrative with characters and plot",
    "poetry": "write a poem haiku sonnet rhymes verses",
    "song lyrics": "write song lyrics chorus rap verse",
    "humor": "tell me a joke funny pun humorous",
    "email writing": "write an email message letter to my boss colleague customer",
    "social media post": "write a tweet instagram caption linkedin post",
    "marketing copy": "write an advertisement slogan product description marketing",
    "essay writing": "write an essay article blog post about the topic",
    "professional writing": "write a cover letter resume proposal report",
    "brainstorming": "give me ideas suggestions brainstorm a list of names",
    "recommendation": "recommend suggest good books movies products to buy",
    "planning": "make a plan schedule itinerary agenda for my trip week",
    "advice": "what should i do advice tips how to deal with my problem",
    "how-to instructions": "how do i make cook build install step by step instructions",
    "explanation": "explain why how does it work what is the reason",
    "definition": "what is the meaning definition of this word term concept",
    "comparison": "compare the differences between two things pros and cons",
    "factual question": "who what when where fact trivia history answer",
    "opinion": "what do you think is better your opinion view",
    "role play": "pretend you are act as a character role play conversation",
    "dialogue": "write a conversation dialogue between two people",
    "analysis": "analyze evaluate critique assess the argument",
    "data formatting": "convert into a table json csv format list",
    "question generation": "generate quiz questions interview questions exam",
    "chit chat": "hi hello how are you chat casual conversation",
}

DOMAINS: dict[str, str] = {
    "programming": "software programming computer code developer api",
    "mathematics": "mathematics numbers geometry probability statistics",
    "science": "physics chemistry biology scientific experiment",
    "medicine": "health medical disease symptoms doctor treatment",
    "fitness": "exercise workout fitness diet nutrition weight",
    "cooking": "recipe cooking food ingredients bake dish kitchen",
    "travel": "travel trip vacation city country tourist visit",
    "history": "history historical war ancient century empire",
    "geography": "geography country capital continent river mountain",
    "politics": "politics government election law policy",
    "law": "legal law contract rights court lawyer",
    "finance": "money finance investment stock budget tax bank",
    "business": "business company startup management marketing sales",
    "career": "job career interview work employer salary",
    "education": "learning school student teacher study university",
    "language": "english words grammar vocabulary language linguistics",
    "literature": "books novel author literature reading",
    "movies and tv": "movie film tv show series actor director",
    "music": "music song band album instrument guitar piano",
    "sports": "sports football basketball soccer game team player",
    "games": "video games gaming board game chess",
    "technology": "technology computer phone internet gadget device",
    "relationships": "relationship family friends dating partner love",
    "parenting": "children kids baby parenting toddler",
    "pets": "dog cat pet animal care",
    "home and garden": "home house garden plants cleaning repair diy",
    "psychology": "emotions feelings mental health anxiety stress psychology",
    "philosophy": "philosophy ethics morality meaning of life",
    "religion": "religion god bible church faith",
    "environment": "climate environment nature energy pollution",
    "art and design": "art painting drawing design color",
    "fashion": "fashion clothes style outfit beauty makeup",
    "cars": "car vehicle driving engine automobile",
}


def seed_tags() -> dict[str, str]:
    """All seed tags (task types, then domains) with the descriptions used to match them."""
    return {**TASK_TYPES, **DOMAINS}
