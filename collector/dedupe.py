"""Idempotency for (agent_id, seq) with bounded memory.

Agents number their reports 1, 2, 3, ... per process start and replay unacknowledged
ones oldest first, so per agent id a high-water mark plus a bitmask of the last
`seq_window` seqs below it tell exactly which recent seqs were applied. A seq
further back than the window is treated as already seen: by then the agent got
its acknowledgement long ago, and counting it twice would be the worse error.
Agent ids are kept in least-recently-seen order and the oldest forgotten past
`max_agents`; each forgetting is counted so an SRE can raise the cap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class _AgentSeqs:
    highest: int  # highest seq applied
    # bit i set: seq (highest - i) applied; bit 0 is always set
    recent: int


class SeqTracker:
    """Remembers which (agent_id, seq) pairs were applied."""

    def __init__(self, max_agents: int = 100_000, seq_window: int = 1024) -> None:
        self.max_agents = max_agents
        self.seq_window = seq_window
        self._agents: OrderedDict[str, _AgentSeqs] = OrderedDict()
        self.evictions = 0  # agent ids forgotten because of max_agents

    def __len__(self) -> int:
        return len(self._agents)

    def seen(self, agent_id: str, seq: int) -> bool:
        """True when (agent_id, seq) was applied or is too old to tell."""
        state = self._agents.get(agent_id)
        if state is None or seq > state.highest:
            return False
        behind = state.highest - seq
        if behind >= self.seq_window:
            return True
        return bool(state.recent >> behind & 1)

    def mark(self, agent_id: str, seq: int) -> None:
        """Record (agent_id, seq) as applied; call only after `seen` said False."""
        state = self._agents.get(agent_id)
        if state is None:
            self._agents[agent_id] = _AgentSeqs(highest=seq, recent=1)
            if len(self._agents) > self.max_agents:
                self._agents.popitem(last=False)
                self.evictions += 1
            return
        self._agents.move_to_end(agent_id)
        if seq > state.highest:
            shift = seq - state.highest
            mask = (1 << self.seq_window) - 1
            state.recent = ((state.recent << shift) | 1) & mask if shift < self.seq_window else 1
            state.highest = seq
        else:
            state.recent |= 1 << (state.highest - seq)

    def export(self) -> list[list[object]]:
        """JSON-ready state, least recently seen first: [[agent_id, highest, recent_hex], ...]."""
        return [[agent, s.highest, format(s.recent, "x")] for agent, s in self._agents.items()]

    def restore(self, rows: Iterable[list[object]]) -> None:
        """Load what `export` produced; raises ValueError on anything malformed."""
        agents: OrderedDict[str, _AgentSeqs] = OrderedDict()
        mask = (1 << self.seq_window) - 1
        for row in rows:
            if not isinstance(row, list) or len(row) != 3:
                raise ValueError("dedupe row must be [agent_id, highest, recent_hex]")
            agent, highest, recent = row
            if not isinstance(agent, str) or not isinstance(highest, int) or not isinstance(
                recent, str
            ):
                raise ValueError("dedupe row has wrong types")
            agents[agent] = _AgentSeqs(highest=highest, recent=int(recent, 16) & mask | 1)
        while len(agents) > self.max_agents:
            agents.popitem(last=False)
        self._agents = agents
