"""The training hot loop: Tolaria (orchestrator), Kasmina (seed slots), Tamiyo (decisions).

The three call each other directly at each epoch boundary; everything they decide is emitted
asynchronously to the run's event stream (see ``emission``). torch is imported only inside this
package, so importing ``core`` alone never pays for it.
"""

__all__: list[str] = []
