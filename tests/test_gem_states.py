"""The E30 control state model: the operator's and the host's switches."""

import pytest

from controller.gem.states import ControlError, ControlModel, ControlState, allowed_offline

S = ControlState


def test_operator_online_is_an_attempt_that_ends_by_the_host():
    model = ControlModel(S.EQUIPMENT_OFFLINE, remote=True)
    assert model.operator_online() is S.ATTEMPT_ONLINE
    assert model.attempt_failed() is S.EQUIPMENT_OFFLINE  # back where it came from
    model.operator_online()
    assert model.attempt_succeeded() is S.ONLINE_REMOTE
    with pytest.raises(ControlError, match="already online-remote"):
        model.operator_online()


def test_the_local_remote_switch_decides_the_online_substate():
    model = ControlModel(S.EQUIPMENT_OFFLINE, remote=False)
    model.operator_online()
    assert model.attempt_succeeded() is S.ONLINE_LOCAL
    assert model.operator_switch(remote=True) is S.ONLINE_REMOTE
    assert model.operator_offline() is S.EQUIPMENT_OFFLINE
    assert model.operator_switch(remote=False) is S.EQUIPMENT_OFFLINE  # kept for later
    assert model.remote is False
    with pytest.raises(ControlError, match="already equipment-offline"):
        model.operator_offline()


def test_host_offline_and_online():
    model = ControlModel(S.ONLINE_REMOTE, remote=True)
    assert model.host_online() == 2  # already online
    assert model.host_offline() == 0 and model.state is S.HOST_OFFLINE
    assert model.host_online() == 0 and model.state is S.ONLINE_REMOTE
    model.operator_offline()
    assert model.host_online() == 1 and model.state is S.EQUIPMENT_OFFLINE
    # host-offline: the host decides when it comes back (S1F17, E30); the operator may
    # only take it offline
    model = ControlModel(S.HOST_OFFLINE, remote=False)
    with pytest.raises(ControlError, match="only the host"):
        model.operator_online()
    assert model.state is S.HOST_OFFLINE
    assert model.operator_offline() is S.EQUIPMENT_OFFLINE


def test_a_restart_mid_attempt_restores_offline():
    assert ControlModel(S.ATTEMPT_ONLINE, remote=True).state is S.EQUIPMENT_OFFLINE


def test_offline_allows_only_establish_and_online_requests():
    assert allowed_offline(1, 13) and allowed_offline(1, 17)
    assert not allowed_offline(1, 1) and not allowed_offline(2, 41)
