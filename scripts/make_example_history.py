"""Write the small example history and catalogue shipped in src/tagrouter/examples/ (deterministic).

Three invented models: ``small-7b`` (cheap), ``mid-70b`` and ``large-api`` (dear, about 50 times the
small model's price per answer). The outcomes tell a story in which routing pays off, as it does on real
pools: every model does well on greetings and trivia (the large one a little worse on chit chat, whose
judges dislike long answers), the mid model writes as well as the large one, and only code and maths need
the large model. Each (topic, model) gets exactly its count of accepted answers, spread over the topic's
queries by a seeded shuffle, so the story holds on 64 queries instead of holding only on average.
"""

from __future__ import annotations

import random
from pathlib import Path

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.records import HistoryRecord, write_history

#: Each topic: its queries, and how many of them each model answers acceptably.
TOPICS: dict[str, tuple[list[str], dict[str, int]]] = {
    "coding": (
        [
            "Write a Python function that returns the n-th Fibonacci number.",
            "Fix the bug in this JavaScript loop that never ends: for (let i = 0; i < 10; i--) {}",
            "Write a SQL query that lists customers with more than three orders.",
            "Implement binary search in Java and explain its complexity.",
            "Write a bash script that renames every .txt file in a folder to .md.",
            "How do I reverse a linked list in C++?",
            "Write a Python class for a bank account with deposit and withdraw methods.",
            "Explain what a Python decorator is and write one that times a function.",
            "Write a regular expression that matches a valid email address and explain it.",
            "Write a Go function that counts the words in a string.",
            "Refactor this Python code to use a list comprehension: result = []; for x in xs: result.append(x * 2)",
            "Write a unit test in pytest for a function that adds two numbers.",
            "Explain the difference between a process and a thread, with a Python example.",
            "Write a TypeScript interface for a user with a name, an email and an optional age.",
        ],
        {"small-7b": 3, "mid-70b": 7, "large-api": 14},
    ),
    "maths": (
        [
            "Solve the equation 3x + 7 = 22 and show each step.",
            "Prove that the square root of 2 is irrational.",
            "What is the derivative of x^3 * sin(x)?",
            "A train travels 300 km in 2.5 hours. What is its average speed in m/s?",
            "How many ways can 5 people sit around a round table?",
            "Compute the integral of 1/(1+x^2) from 0 to 1.",
            "If a shirt costs $40 after a 20% discount, what was the original price?",
            "Find all prime numbers between 50 and 80.",
            "What is the probability of rolling two sixes with two fair dice?",
            "Solve the system of equations x + y = 10 and x - y = 4.",
            "What is the sum of the interior angles of a hexagon?",
            "Prove that the sum of two even numbers is even.",
            "Find the roots of x^2 - 5x + 6 = 0.",
            "What is 15% of 240, and how do you compute it?",
        ],
        {"small-7b": 1, "mid-70b": 5, "large-api": 12},
    ),
    "chit chat": (
        [
            "Hi! How are you today?",
            "Good morning, can you cheer me up a bit?",
            "Tell me a fun fact about cats.",
            "What's a good name for a golden retriever puppy?",
            "Say something nice to my friend who passed her exam.",
            "Tell me a joke about programmers.",
            "Hello there, what's up?",
            "I'm bored. Any idea what I could do this evening?",
            "Thanks for your help yesterday!",
            "What's your favourite colour?",
            "Tell me something that will make me smile.",
            "Hey, can we just chat for a minute?",
        ],
        {"small-7b": 12, "mid-70b": 12, "large-api": 9},
    ),
    "trivia": (
        [
            "What is the capital of Australia?",
            "Who wrote Pride and Prejudice?",
            "How many planets are in the solar system?",
            "When did the Berlin Wall fall?",
            "What is the largest ocean on Earth?",
            "Which element has the chemical symbol Fe?",
            "What is the tallest mountain in the world?",
            "Who painted the Mona Lisa?",
            "What is the boiling point of water at sea level in Celsius?",
            "Which country has the largest population?",
            "What language is spoken in Brazil?",
            "Who was the first person to walk on the Moon?",
        ],
        {"small-7b": 12, "mid-70b": 12, "large-api": 12},
    ),
    "writing": (
        [
            "Write a short poem about autumn rain.",
            "Rewrite this sentence to sound more formal: 'gonna be late, sorry'.",
            "Write a polite email asking my landlord to fix the heating.",
            "Write a four-line birthday message for my grandmother.",
            "Write a short story about a robot who learns to paint.",
            "Summarise the plot of Romeo and Juliet in three sentences.",
            "Write a thank-you note to a colleague who helped me move.",
            "Write a limerick about a lazy cat.",
            "Rewrite this paragraph in plain English: 'We hereby acknowledge receipt of your correspondence.'",
            "Write a product description for a reusable water bottle.",
            "Write a two-sentence horror story.",
            "Write a short toast for my brother's wedding.",
        ],
        {"small-7b": 6, "mid-70b": 12, "large-api": 12},
    ),
}

PRICES = {"small-7b": (0.2, 0.2), "mid-70b": (0.9, 0.9), "large-api": (10.0, 30.0)}
OUTPUT_TOKENS = {"small-7b": 250, "mid-70b": 300, "large-api": 350}


EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "tagrouter" / "examples"


def main(folder: Path = EXAMPLES) -> None:
    rng = random.Random(7)
    records = []
    query_id = 0
    for questions, accept in TOPICS.values():
        accepted_by = {}
        for model, count in accept.items():
            verdicts = [i < count for i in range(len(questions))]
            rng.shuffle(verdicts)
            accepted_by[model] = verdicts
        for number, question in enumerate(questions):
            query_id += 1
            input_tokens = max(4, len(question) // 4)
            for model in accept:
                accepted = accepted_by[model][number]
                outcome = ("win" if rng.random() < 0.8 else "tie") if accepted else "loss"
                output_tokens = OUTPUT_TOKENS[model] + rng.randint(-50, 50)
                price_in, price_out = PRICES[model]
                records.append(
                    HistoryRecord(
                        query_id=f"q{query_id:03d}",
                        query=question,
                        model=model,
                        outcome=outcome,
                        reference="reference-model",
                        input_tokens=input_tokens,
                        output_tokens=output_tokens,
                        cost=round((input_tokens * price_in + output_tokens * price_out) / 1e6, 10),
                    )
                )
    write_history(folder / "history.jsonl", records)
    Catalog(
        models=[ModelCard(name=m, input_usd_per_1m=p[0], output_usd_per_1m=p[1]) for m, p in PRICES.items()]
    ).save(folder / "catalog.yaml")
    print(f"wrote {len(records)} records to {folder}")


if __name__ == "__main__":
    main()
