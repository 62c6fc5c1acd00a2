"""A saved parameter-shared SB3 policy as a benchmark agent, on networks of any depth.

The policy was trained on one id's layers (one vector-env slot per layer), so it maps one
layer's observation to that layer's factor. Every id shares the observation's features and
the factor set, so the same policy drives deeper MLPs and CNNs it never saw: at each
decision the live layers' observations are stacked into one batch and ``predict`` returns
one factor index per layer. Recurrent policies (sb3-contrib's ``RecurrentPPO``) keep one
hidden state per layer through the episode.

The batch-size track's single-agent envs (``ganno/BatchSize-*``, one ``controller``) train
and play the same way, with one slot per env copy. A policy trained by
:func:`ganno_bench.baselines.ppo.train_ppo` records its id and track (``ganno_env_id``,
``ganno_track`` in the saved model), and plays only ids of its own track: its
observations and actions mean other things on the other one.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganno_bench.agents.protocol import Actions, Infos, Observations, _layer_index
from ganno_bench.envs.batch_observation import BATCH_FEATURE_NAMES
from ganno_bench.envs.observation import FEATURE_NAMES
from ganno_bench.envs.registry import track_of
from ganno_bench.inner.instances import Instance
from ganno_bench.inner.task import TaskSpec

__all__ = ["PolicyAgent", "load_policy", "policy_track", "portable_path", "recorded_path"]

# observation features per track (a policy without a recorded track is known by its shape)
TRACK_FEATURES = {"layer-lr": FEATURE_NAMES, "batch-size": BATCH_FEATURE_NAMES}


def policy_track(model: Any) -> tuple[str | None, str | None]:
    """The (track, env id) a policy was trained on: as recorded by ``train_ppo``, else the
    track whose observation shape it reads (policies saved before the record), else None."""
    track = getattr(model, "ganno_track", None)
    if track is None:
        shape = getattr(model.observation_space, "shape", None)
        track = next((t for t, f in TRACK_FEATURES.items() if shape == (len(f),)), None)
    return track, getattr(model, "ganno_env_id", None)


def _agent_order(agent: str) -> tuple[int, str]:
    """Layers by index (``layer_<k>``); any other agent (``controller``) by name."""
    try:
        return (_layer_index(agent), agent)
    except (IndexError, ValueError):
        return (-1, agent)


def live_batch(
    players: Sequence[Any], observations: Sequence[Observations]
) -> tuple[list[list[str]], np.ndarray]:
    """Every episode's live layers (in layer order) and their observations as one batch."""
    lives = [
        [a for a in p._agents if a in obs] for p, obs in zip(players, observations, strict=True)
    ]
    batch = np.stack(
        [obs[a] for live, obs in zip(lives, observations, strict=True) for a in live]
    ).astype(np.float32)
    return lives, batch


def per_episode(lives: Sequence[Sequence[str]], actions: np.ndarray) -> list[Actions]:
    """One batch's actions split back into each episode's ``{layer: factor index}``."""
    out, start = [], 0
    for live in lives:
        chosen = actions[start : start + len(live)]
        out.append({agent: int(a) for agent, a in zip(live, chosen, strict=True)})
        start += len(live)
    return out


def _algorithm(path: Path) -> str:
    """``"PPO"`` or ``"RecurrentPPO"``, read from the saved policy's class path."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("data").decode()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a saved Stable-Baselines3 model ({exc})") from exc
    return "RecurrentPPO" if "RecurrentActorCriticPolicy" in data else "PPO"


def load_policy(path: str | Path, device: str = "cpu") -> Any:
    """Load a saved PPO or RecurrentPPO model (without an env) for inference."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no saved policy at {path}: train one with `ganno-bench train ppo --env ID "
            "--out DIR` (it writes DIR/final.zip) or give the path of a checkpoint"
        )
    if _algorithm(path) == "RecurrentPPO":
        try:
            from sb3_contrib import RecurrentPPO
        except ImportError as exc:
            raise ImportError(
                f"{path} holds a recurrent policy; install sb3-contrib to load it"
            ) from exc
        return RecurrentPPO.load(path, device=device)
    from stable_baselines3 import PPO

    return PPO.load(path, device=device)


def portable_path(path: Path) -> str:
    """A shipped file as ``baselines/ppo/NAME.zip`` (the same on every clone), any other
    as given: what a card records of the policy that played."""
    from ganno_bench.baselines.files import baselines_dir

    try:
        return f"baselines/{path.resolve().relative_to(baselines_dir().resolve()).as_posix()}"
    except ValueError:
        return str(path)


def recorded_path(recorded: str) -> Path:
    """The file a card's :func:`portable_path` names, on this clone."""
    from ganno_bench.baselines.files import baselines_dir

    if recorded.startswith("baselines/"):
        return baselines_dir() / recorded.removeprefix("baselines/")
    return Path(recorded)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PolicyAgent:
    """Drive every layer with one saved policy (factor mode, deterministic actions).

    ``PolicyAgent.from_path("run/final.zip")`` for a saved model, or ``PolicyAgent(model)``
    for one in memory (e.g. during training). Pickling keeps the path, not the model, so
    evaluation workers load it themselves.
    """

    action_mode = "factor"

    def __init__(self, model: Any = None, name: str = "ppo", path: str | Path | None = None):
        if model is None and path is None:
            raise ValueError("PolicyAgent needs a model or the path of a saved one")
        self.name = name
        self.path = Path(path) if path is not None else None
        self._model = model
        self._digest = _sha256(self.path) if self.path is not None else None

    @classmethod
    def from_path(cls, path: str | Path, name: str | None = None) -> PolicyAgent:
        path = Path(path)
        if not path.is_file():
            load_policy(path)  # raises the helpful FileNotFoundError
        return cls(name=name or path.stem, path=path)

    @property
    def model(self) -> Any:
        if self._model is None:
            if _sha256(self.path) != self._digest:  # the card must describe what played
                raise ValueError(
                    f"{self.path} changed since this agent was made (its SHA-256 differs); "
                    "make the agent again from the file you mean to evaluate"
                )
            self._model = load_policy(self.path)
        return self._model

    @property
    def recurrent(self) -> bool:
        return type(self.model).__name__ == "RecurrentPPO"

    def config(self) -> dict[str, Any]:
        return {
            "algorithm": type(self.model).__name__,
            "checkpoint": portable_path(self.path) if self.path is not None else None,
            "checkpoint_sha256": self._digest,
            "deterministic": True,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None:
            state["_model"] = None  # workers reload from the file
        return state

    def reset(self, task: TaskSpec, instance: Instance, agents: Sequence[str], seed: int) -> None:
        track, trained_on = policy_track(self.model)
        if track is None:
            wanted = len(TRACK_FEATURES[track_of(task)])
            raise ValueError(
                f"the policy reads observations of shape {self.model.observation_space.shape}"
                f", but {task.id}'s agents have {wanted} features: it was trained on another "
                "suite version"
            )
        if track != track_of(task):
            source = f"on {trained_on}" if trained_on else f"for the {track} track"
            raise ValueError(
                f"this policy was trained {source}; {task.id} is a {track_of(task)} id: "
                f"play it on {track} ids only (a policy's observations and actions mean "
                "other things on the other track)"
            )
        space = self.model.action_space
        if getattr(space, "n", None) != len(task.factors):
            raise ValueError(
                f"the policy chooses among {getattr(space, 'n', space)} actions but "
                f"{task.id} has {len(task.factors)} factors {tuple(task.factors)}: use a "
                "policy trained on an id with the same factors"
            )
        shape = self.model.observation_space.shape
        features = TRACK_FEATURES[track]
        if shape != (len(features),):
            raise ValueError(
                f"the policy reads observations of shape {shape}, but this suite's {track} "
                f"agents have {len(features)} features: it was trained on another suite version"
            )
        self._agents = sorted(agents, key=_agent_order)
        self._state: Any = None
        self._episode_start = np.ones(len(self._agents), dtype=bool)

    @staticmethod
    def act_together(
        players: Sequence[PolicyAgent], observations: Sequence[Observations]
    ) -> list[Actions] | None:
        """One forward pass for several episodes' decisions (batched evaluation): every
        live layer of every episode in one ``predict`` batch. ``players`` are copies of
        one agent, so the first one's model speaks for all. None for a recurrent policy,
        whose hidden states stay per episode (the caller then asks each copy's ``act``)."""
        if not players or players[0].recurrent:
            return None
        lives, batch = live_batch(players, observations)
        actions, _ = players[0].model.predict(batch, deterministic=True)
        return per_episode(lives, actions)

    def act(self, observations: Observations, infos: Infos) -> Actions:
        if not self.recurrent:  # one episode is a batch of one
            return self.act_together([self], [observations])[0]
        live = [a for a in self._agents if a in observations]
        batch = np.stack([observations[a] for a in live]).astype(np.float32)
        actions, self._state = self.model.predict(
            batch,
            state=self._state,
            episode_start=self._episode_start[: len(live)],
            deterministic=True,
        )
        self._episode_start[:] = False
        return {agent: int(action) for agent, action in zip(live, actions, strict=True)}
