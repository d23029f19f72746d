"""The training hot loop: Tolaria (orchestrator), Kasmina (seed slots), Tamiyo (decisions).

The three call each other directly at each epoch boundary; everything they decide is an event
(``events``) handed to an event sink, and every piece of I/O goes through a port (``ports``)
that ``eventstore.triad`` and ``api`` implement: this package computes and decides, it never
touches a file, a socket or a thread. torch is imported only inside this package (and only by
the modules that compute), so importing ``core`` alone never pays for it.
"""

# The run events are domain events: core.domain's registry imports core.triad.events, which
# subclasses core.domain's DomainEvent. Importing core.domain first, before any module of this
# package, settles that cycle the same way whichever of the two a program imports first.
import core.domain  # noqa: F401

__all__: list[str] = []
