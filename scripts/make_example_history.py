"""Write the small example history and catalogue shipped in src/tagrouter/examples/ (deterministic).

Three invented models: ``small-7b`` (cheap), ``mid-70b`` and ``large-api`` (dear). The outcomes follow a
simple story so the fitted router has something to find: the small model is fine on greetings, trivia and
short rewrites but loses on code and maths; the mid model loses on maths proofs only; the large model wins
almost everywhere.
"""

from __future__ import annotations

import random
from pathlib import Path

from tagrouter.catalog import Catalog, ModelCard
from tagrouter.records import HistoryRecord, write_history

TOPICS: dict[str, tuple[list[str], dict[str, float]]] = {
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
        ],
        {"small-7b": 0.2, "mid-70b": 0.7, "large-api": 0.95},
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
        ],
        {"small-7b": 0.15, "mid-70b": 0.45, "large-api": 0.9},
    ),
    "chit chat": (
        [
            "Hi! How are you today?",
            "Good morning, can you cheer me up a bit?",
            "Tell me a fun fact about cats.",
            "What's a good name for a golden retriever puppy?",
            "Say something nice to my friend who passed her exam.",
            "Tell me a joke about programmers.",
        ],
        {"small-7b": 0.9, "mid-70b": 0.92, "large-api": 0.95},
    ),
    "trivia": (
        [
            "What is the capital of Australia?",
            "Who wrote Pride and Prejudice?",
            "How many planets are in the solar system?",
            "When did the Berlin Wall fall?",
            "What is the largest ocean on Earth?",
            "Which element has the chemical symbol Fe?",
        ],
        {"small-7b": 0.85, "mid-70b": 0.9, "large-api": 0.95},
    ),
    "writing": (
        [
            "Write a short poem about autumn rain.",
            "Rewrite this sentence to sound more formal: 'gonna be late, sorry'.",
            "Write a polite email asking my landlord to fix the heating.",
            "Write a four-line birthday message for my grandmother.",
            "Write a short story about a robot who learns to paint.",
            "Summarise the plot of Romeo and Juliet in three sentences.",
        ],
        {"small-7b": 0.6, "mid-70b": 0.85, "large-api": 0.95},
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
        for question in questions:
            query_id += 1
            input_tokens = max(4, len(question) // 4)
            for model, p_accept in accept.items():
                accepted = rng.random() < p_accept
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
