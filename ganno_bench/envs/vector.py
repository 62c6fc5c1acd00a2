"""Parameter-shared Stable-Baselines3 vector envs, built through SuperSuit, with its bugs fixed.

:func:`make_vec_env` builds the usual parameter-sharing stack, one slot per layer per copy::

    ganno_bench.make(id) -> _RecordStepInfos (ours) -> supersuit.pettingzoo_env_to_vec_env_v1
        -> _CopyVecEnv (ours, one per copy)
        -> supersuit.concat_vec_envs_v1(base_class="stable_baselines3")
        -> SeededVecEnv (ours, an SB3 VecEnvWrapper)

and fixes these problems of the plain SuperSuit path (SuperSuit 3.11, SB3 2.x):

1. *Seeding raises.* SuperSuit's SB3 wrapper forwards ``seed()`` to a Gymnasium vector env
   that has no ``seed`` method, so ``venv.seed(s)`` and ``PPO(..., seed=s)`` raise
   ``AttributeError``; :class:`SeededVecEnv` implements ``seed`` the SB3 way (seeds are
   stored and used by the next ``reset()``), so ``seed(s); reset()`` is deterministic.
2. *Identical unseeded copies.* ``concat_vec_envs_v1`` deep-copies one env, RNG state
   included, so unseeded copies draw the same instances; the wrapper always seeds the
   first reset, from OS entropy when no seed is given, with a distinct seed per copy.
3. *Colliding seeds with ``num_cpus > 1``.* SuperSuit seeds worker ``p``'s ``j``-th copy
   with ``seed + p + j``, so copies in different workers share streams; instead copy ``c``
   gets ``copy_seeds(seed, n)[c]`` (from ``numpy.random.SeedSequence(seed).spawn(n)``),
   delivered through ``reset(options=...)`` and addressed by a random per-copy token that
   the wrapper learns once, in slot order, with a probing reset that touches no env.
4. *Truncation reported as termination.* SuperSuit's SB3 wrapper merges terminations and
   truncations into ``dones`` and drops the difference, so PPO never bootstraps at time
   limits; :class:`_CopyVecEnv` sets ``info["TimeLimit.truncated"] = truncated and not
   terminated`` in every slot's info (as SB3's own vec envs do), beside SuperSuit's
   ``terminal_observation``.
5. *Final-step infos overwritten.* On an episode's end SuperSuit merges the auto-reset's
   infos over the last step's, so e.g. ``info["diverged"]`` reads ``False`` after a
   divergence; :class:`_RecordStepInfos` keeps the last step's infos and the final slot
   infos are rebuilt from them (SB3's convention: a done step's info is the ending
   episode's; the new episode starts from the returned observation).
6. *Compressed reset infos with ``num_cpus > 1``.* ``ProcConcatVec.reset`` returns its
   workers' compressed ``(index, info)`` lists instead of one info per slot; the wrapper
   decompresses them into ``reset_infos``.

Worker processes (``num_cpus > 1``) are forked after the parent built the env with torch;
a forked child entering torch's inherited OpenMP thread pool can deadlock, so each copy calls
``torch.set_num_threads(1)`` when it is unpickled in a process other than its parent's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium.vector
import numpy as np
import supersuit as ss
import torch
from gymnasium.vector.utils import create_empty_array
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from supersuit.vector import ProcConcatVec
from supersuit.vector.multiproc_vec import decompress_info

from ganno_bench.envs.batched_episodes import batching_pays
from ganno_bench.envs.batched_vector import BatchedVecEnv
from ganno_bench.envs.common import copy_seeds
from ganno_bench.envs.registry import make, spec_with

__all__ = ["ENGINES", "SeededVecEnv", "copy_seeds", "make_vec_env"]

# reset(options={_OPTIONS_KEY: ...}) carries the wrapper's requests to the copies.
_OPTIONS_KEY = "ganno_bench.envs.vector"
_PROBE = "probe"
_TOKEN_KEY = "ganno_bench.envs.vector.copy_token"


def _new_token() -> str:
    return os.urandom(16).hex()


class _RecordStepInfos(BaseParallelWrapper):
    """Keeps a copy of the last step's infos, before SuperSuit merges reset infos into them."""

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        out = self.env.step(actions)
        self.last_step_infos = {agent: dict(info) for agent, info in out[4].items()}
        return out


class _CopyVecEnv(gymnasium.vector.VectorEnv):
    """One copy (a MarkovVectorEnv, one slot per agent): per-copy seeds and truncation infos.

    Each instance has a random token, redrawn whenever it is unpickled (SuperSuit makes its
    copies by pickling), so the wrapper can address one copy's seed through the shared
    ``options`` of a reset.
    """

    def __init__(self, venv: gymnasium.vector.VectorEnv) -> None:
        self.venv = venv
        self.num_envs = venv.num_envs
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space
        self.metadata = venv.metadata
        self.render_mode = venv.render_mode
        self._token = _new_token()
        self._origin_pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_token", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._token = _new_token()
        if os.getpid() != self._origin_pid:  # a worker process: keep torch single-threaded
            torch.set_num_threads(1)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, list[dict[str, Any]]]:
        options = dict(options or {})  # the same dict reaches every copy: never mutate it
        request = options.pop(_OPTIONS_KEY, None)
        if request == _PROBE:  # report this copy's token; the env is left untouched
            obs = create_empty_array(self.observation_space, self.num_envs, fn=np.zeros)
            return obs, [{_TOKEN_KEY: self._token} for _ in range(self.num_envs)]
        if request is not None:
            entry = request[self._token]
            seed = entry["seed"]
            options.update(entry["options"] or {})
        return self.venv.reset(seed=seed, options=options or None)

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, list[dict[str, Any]]]:
        obs, rewards, terminations, truncations, infos = self.venv.step(actions)
        if np.logical_or(terminations, truncations).all():  # SuperSuit has auto-reset the copy
            final = self.venv.par_env.last_step_infos
            agents = self.venv.par_env.possible_agents
            merged, infos = infos, []
            for agent, info in zip(agents, merged, strict=True):
                infos.append(dict(final.get(agent, {})))
                if "terminal_observation" in info:
                    infos[-1]["terminal_observation"] = info["terminal_observation"]
        for info, terminated, truncated in zip(infos, terminations, truncations, strict=True):
            info["TimeLimit.truncated"] = bool(truncated and not terminated)
        return obs, rewards, terminations, truncations, infos

    def step_async(self, actions: Any) -> None:
        self._saved_actions = actions

    def step_wait(self) -> tuple[Any, Any, Any, Any, list[dict[str, Any]]]:
        return self.step(self._saved_actions)

    def render(self) -> Any:
        return self.venv.render()

    def close(self, **kwargs: Any) -> None:
        self.venv.close()

    def env_is_wrapped(self, wrapper_class: type) -> list[bool]:
        return self.venv.env_is_wrapped(wrapper_class)


class SeededVecEnv(VecEnvWrapper):
    """SuperSuit's SB3 vec env with working, per-copy seeding (see the module docstring).

    Slot ``c * agents_per_copy + i`` is agent ``i`` of copy ``c``. ``seed(s)`` stores
    :func:`copy_seeds` for the next ``reset()``, as SB3's vec envs do; the constructor
    stores them too (OS entropy when ``seed`` is None), so the first reset is always seeded.
    """

    def __init__(
        self, venv: VecEnv, *, num_copies: int, agents_per_copy: int, seed: int | None = None
    ) -> None:
        self.num_copies = num_copies
        self.agents_per_copy = agents_per_copy
        self._gym_venv = venv.venv  # SuperSuit's ConcatVecEnv or ProcConcatVec
        super().__init__(venv)
        if self.num_envs != num_copies * agents_per_copy:
            raise ValueError(f"{self.num_envs} slots is not {num_copies} x {agents_per_copy}")
        self._tokens = self._probe_tokens()
        self._pending_seeds: list[int] | None = None
        self.seed(seed)

    def _reset_copies(self, request: Any) -> tuple[Any, list[dict[str, Any]]]:
        obs, infos = self._gym_venv.reset(options={_OPTIONS_KEY: request})
        if isinstance(self._gym_venv, ProcConcatVec):  # its reset infos come back compressed
            infos = decompress_info(self.num_envs, self._gym_venv.idx_starts, infos)
        return obs, [dict(info) for info in infos]

    def _probe_tokens(self) -> list[str]:
        _, infos = self._reset_copies(_PROBE)
        per_slot = [info[_TOKEN_KEY] for info in infos]
        tokens = per_slot[:: self.agents_per_copy]
        expected = [t for t in tokens for _ in range(self.agents_per_copy)]
        if per_slot != expected or len(set(tokens)) != self.num_copies:
            raise RuntimeError("could not identify the vector env's copies (token mismatch)")
        return tokens

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: copy ``c`` gets ``copy_seeds(seed, num_copies)[c]``."""
        self._pending_seeds = copy_seeds(seed, self.num_copies)
        return [s for s in self._pending_seeds for _ in range(self.agents_per_copy)]

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options for the next reset; a copy takes the options of its first slot."""
        VecEnv.set_options(self, options)

    def reset(self) -> np.ndarray:
        request = {
            token: {
                "seed": None if self._pending_seeds is None else self._pending_seeds[c],
                "options": self._options[c * self.agents_per_copy] or None,
            }
            for c, token in enumerate(self._tokens)
        }
        obs, self.reset_infos = self._reset_copies(request)
        self._pending_seeds = None
        self._reset_options()
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, rewards, np.asarray(dones, dtype=bool), list(infos)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``render_mode`` always; other attributes of the copies' envs only in-process."""
        slots = list(self._get_indices(indices))
        if attr_name == "render_mode":
            return [self._gym_venv.render_mode for _ in slots]
        copies = getattr(self._gym_venv, "vec_envs", None)
        if copies is None:
            raise AttributeError(
                f"get_attr({attr_name!r}) is not available with worker processes (num_cpus > 1)"
            )
        envs = [c.venv.par_env.unwrapped for c in copies]
        return [getattr(envs[slot // self.agents_per_copy], attr_name) for slot in slots]


ENGINES = ("sequential", "batched")


def make_vec_env(
    env_id: str,
    num_copies: int = 1,
    *,
    num_cpus: int = 0,
    seed: int | None = None,
    engine: str = "sequential",
    **make_kwargs: Any,
) -> VecEnv:
    """A parameter-shared SB3 VecEnv of ``num_copies`` copies of ``env_id``.

    ``num_envs`` is ``num_copies`` x the env's agents (layers). ``engine="sequential"``
    steps one :class:`~ganno_bench.envs.layer_lr.LayerLREnv` per copy through SuperSuit
    (``num_cpus`` > 1 runs the copies in that many worker processes); ``engine="batched"``
    trains every copy in one :class:`~ganno_bench.inner.batched.BatchedTrainer`
    (:class:`~ganno_bench.envs.batched_vector.BatchedVecEnv`, layerwise-LR ids, factor
    actions). ``seed`` seeds the first reset (see :func:`copy_seeds`); ``make_kwargs``
    go to :func:`ganno_bench.make` (``split``, ``action_mode``, ``device``, overrides
    such as ``decisions``).
    """
    if num_copies < 1:
        raise ValueError(f"num_copies must be at least 1; got {num_copies}")
    if num_cpus < 0:
        raise ValueError(f"num_cpus must be non-negative; got {num_cpus}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "batched":
        return _batched_vec_env(env_id, num_copies, num_cpus, seed, dict(make_kwargs))
    env = make(env_id, **make_kwargs)
    if not isinstance(env, ParallelEnv):
        raise TypeError(f"{env_id!r} is not a PettingZoo ParallelEnv; got {type(env).__name__}")
    markov = ss.pettingzoo_env_to_vec_env_v1(_RecordStepInfos(env))
    venv = ss.concat_vec_envs_v1(
        _CopyVecEnv(markov), num_copies, num_cpus=num_cpus, base_class="stable_baselines3"
    )
    return SeededVecEnv(venv, num_copies=num_copies, agents_per_copy=markov.num_envs, seed=seed)


def _batched_vec_env(
    env_id: str, num_copies: int, num_cpus: int, seed: int | None, kwargs: dict[str, Any]
) -> VecEnv:
    if num_cpus > 1:
        raise ValueError(
            "engine='batched' trains every copy in this process, in one computation: "
            "num_cpus must be 0 or 1"
        )
    if kwargs.pop("action_mode", "factor") != "factor":
        raise ValueError("engine='batched' takes factor actions (action_mode='factor')")
    if kwargs.pop("render_mode", None) is not None:
        raise ValueError("engine='batched' renders nothing (render_mode=None)")
    split = kwargs.pop("split", "train")
    device = kwargs.pop("device", "cpu")
    task = spec_with(env_id, kwargs)
    if not batching_pays(task, num_copies, device):  # one CNN copy: nothing to batch
        return make_vec_env(env_id, num_copies, seed=seed, split=split, **kwargs)
    return BatchedVecEnv(task, num_copies, split=split, seed=seed, device=device)
