"""A labelled text set nobody here wrote: standard-library docstrings labelled by their package.

The label of each docstring is the package it comes from (the Python sources decide it);
the only text written here is one short description per package, the kind of label
description a user gives a zero-shot classifier.
"""

from __future__ import annotations

from .stdlib_docs import docstring_items

#: package -> description (from the package's own one-line summary in the Python docs)
TOPICS = {
    "tkinter": "graphical user interface widgets, windows and canvas",
    "asyncio": "asynchronous I/O, event loop, coroutines, tasks and futures",
    "email": "email messages, MIME parts and mail headers",
    "xml": "XML documents, elements, parsing and DOM",
    "logging": "logging messages, loggers, handlers and log levels",
    "_pydecimal": "decimal fixed and floating point arithmetic, rounding and precision",
    "unittest": "unit testing framework, test cases, assertions and mocks",
    "http": "HTTP clients, servers, requests, responses and cookies",
    "multiprocessing": "process-based parallelism, worker pools, queues and shared memory",
    "tarfile": "reading and writing tar archive files",
    "datetime": "dates, times, time zones and durations",
    "ipaddress": "IPv4 and IPv6 addresses and networks",
}


def topic_texts(per_topic: int | None = 100) -> tuple[list[str], list[str], dict[str, str]]:
    """(texts, labels, descriptions): up to ``per_topic`` docstrings of each package in TOPICS,
    in source order (labels are package names)."""
    texts, labels = [], []
    count: dict[str, int] = {}
    for it in docstring_items():
        pkg = it.metadata["package"]
        if pkg in TOPICS and (per_topic is None or count.get(pkg, 0) < per_topic):
            count[pkg] = count.get(pkg, 0) + 1
            texts.append(it.text)
            labels.append(pkg)
    return texts, labels, dict(TOPICS)
