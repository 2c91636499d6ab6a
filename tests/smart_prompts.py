"""Chat prompts on either side of smart Auto's threshold, chosen by scoring them with the router the code uses
(never by hard-coding a score: retraining the router moves scores)."""

from routing.smart import router
from routing.types import ChatMessage, ChatRequest

# Asks of very different difficulty; at least one of each kind lands on each side of the top dial level's
# threshold for any sensible router.
HARD = [
    "Prove that there are infinitely many primes, then analyze the asymptotic density of primes using the prime "
    "number theorem, step by step, with a rigorous error term.",
    "Derive the Euler-Lagrange equations for a double pendulum, linearize them around the stable equilibrium and "
    "find the normal modes; then write an RK4 integrator in Python and discuss energy drift.",
    "Design a lock-free multi-producer multi-consumer queue in C++ with hazard pointers; prove linearizability and "
    "analyze the ABA problem and memory reclamation under contention.",
]
EASY = ["hi", "Tell me about kiwis", "What is the capital of France?", "thanks!"]


def first_message_score(text: str) -> float:
    """The score of `text` as the first message of a conversation (what a chat turn's request holds)."""
    return router().score_request(ChatRequest(messages=[ChatMessage(role="user", content=text)]))


def prompt_at_or_above(level: int) -> tuple[str, float]:
    threshold = router().threshold(level)
    for text in HARD + EASY:
        score = first_message_score(text)
        if score >= threshold:
            return text, score
    raise AssertionError(f"no test prompt reaches the level-{level} threshold {threshold:.3f}")


def prompt_below(level: int) -> tuple[str, float]:
    threshold = router().threshold(level)
    for text in EASY + HARD:
        score = first_message_score(text)
        if score < threshold:
            return text, score
    raise AssertionError(f"every test prompt reaches the level-{level} threshold {threshold:.3f}")
