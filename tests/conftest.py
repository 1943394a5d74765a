"""Shared fixtures: the tiny test config and helpers to build networks and states."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture
def test_config():
  from configs import test as test_config_module  # pylint: disable=g-import-not-at-top
  return test_config_module.get_config()
