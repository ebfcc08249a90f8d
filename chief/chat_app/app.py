"""Chief's Chainlit app: thin wiring from Chainlit's callbacks to `Conversation` and the process runtime.

Run with `chief chat` (which prepares Chainlit's app folder and settings first).
"""

from __future__ import annotations

from typing import Any

import chainlit as cl

from chief.chat_app.conversation import Conversation
from chief.chat_app.data import ChiefDataLayer
from chief.chat_app.runtime import auth_enabled, close_runtime, get_runtime, open_runtime
from chief.core.errors import ChiefError


@cl.on_app_startup
async def _startup() -> None:
    await open_runtime()


@cl.on_app_shutdown
async def _shutdown() -> None:
    await close_runtime()


@cl.data_layer
def _data_layer() -> ChiefDataLayer:
    return ChiefDataLayer(lambda: get_runtime().chat)


if auth_enabled():

    @cl.password_auth_callback
    async def _login(username: str, password: str) -> cl.User | None:
        user = await get_runtime().chat.authenticate(username, password)
        return None if user is None else cl.User(identifier=user.identifier, metadata={"provider": "credentials"})


def _conversation() -> Conversation:
    conversation = cl.user_session.get("chief")
    if conversation is None:
        user = cl.user_session.get("user")
        conversation = Conversation(get_runtime(), user_id=getattr(user, "id", None))
        cl.user_session.set("chief", conversation)
    return conversation


@cl.on_chat_start
async def _chat_start() -> None:
    await _conversation().start()


@cl.on_chat_resume
async def _chat_resume(thread: Any) -> None:
    await _conversation().resume(thread)


@cl.on_message
async def _message(message: cl.Message) -> None:
    await _conversation().on_message(message)


@cl.on_settings_update
async def _settings(settings: dict[str, Any]) -> None:
    await _conversation().settings_update(settings)


async def _guarded(action: cl.Action, what: str) -> None:
    conversation = _conversation()
    payload = action.payload or {}
    try:
        if what in ("pause", "resume", "cancel"):
            await conversation.control(what, payload["execution_id"])
        elif what in ("approve", "reject"):
            await conversation.decide(payload["execution_id"], payload.get("step"), approved=what == "approve")
        elif what == "run_plan":
            await conversation.run_pending(payload["plan"])
        elif what == "drop_plan":
            conversation.pending.pop(payload.get("plan"), None)
            await conversation.say("Plan discarded.")
    except ChiefError as exc:
        await conversation.say(f"⚠️ {exc}")


@cl.action_callback("chief_pause")
async def _pause(action: cl.Action) -> None:
    await _guarded(action, "pause")


@cl.action_callback("chief_resume")
async def _resume(action: cl.Action) -> None:
    await _guarded(action, "resume")


@cl.action_callback("chief_cancel")
async def _cancel(action: cl.Action) -> None:
    await _guarded(action, "cancel")


@cl.action_callback("chief_approve")
async def _approve(action: cl.Action) -> None:
    await _guarded(action, "approve")


@cl.action_callback("chief_reject")
async def _reject(action: cl.Action) -> None:
    await _guarded(action, "reject")


@cl.action_callback("chief_run_plan")
async def _run_plan(action: cl.Action) -> None:
    await _guarded(action, "run_plan")


@cl.action_callback("chief_drop_plan")
async def _drop_plan(action: cl.Action) -> None:
    await _guarded(action, "drop_plan")
