"""Broken deploy files, each with the exact lines `validate` prints for it.

Each case writes deploy.yaml into a fresh folder and loads it the way the CLI does.
The expected lines are ``FILE:LINE:COLUMN: field.path: message``. A few cases run the
real CLI in a subprocess to check the exit code and that no traceback reaches stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.config.loader import load_config, load_every_environment
from moondream_iac.config.yamlfile import MAX_FILE_BYTES
from moondream_iac.errors import ConfigError

GPUS = "T4, L4, A10G, L40S, A100-40GB, A100-80GB, H100, H200, B200"
TOP_KEYS = ("version, target, app, gpu, autoscaling, concurrency, timeouts, model, volume, "
            "secrets, auth, placement, server, local, environments")
KNOWN_TAGS = ("2024-03-04, 2024-03-06, 2024-03-13, 2024-04-02, 2024-05-08, 2024-05-20, "
              "2024-07-23, 2024-08-26, 2025-01-09, 2025-03-27, 2025-04-14, 2025-06-21")
NAME_HINT = ("use letters, digits, '.', '_' and '-', starting with a letter or digit, at "
             "most 64 characters")
LABEL_HINT = ("use lowercase letters, digits and '-', starting and ending with a letter or "
              "digit, at most 63 characters")
RESERVED_MOUNT = "mount_path must not be /, /root or /tmp, which Modal reserves"
ELSEWHERE = "mount the volume elsewhere, e.g. /weights"
REMOVED = "was removed from Modal (it raises DeprecationError in modal 1.x); use"
LONG_NAME = "a" * 5000

# (case id, file text, the exact problem lines)
BROKEN = [
    # Limits, at the first value past each boundary.
    ("scaledown_window_1", "autoscaling:\n  scaledown_window: 1\n",
     ["deploy.yaml:2:3: autoscaling.scaledown_window: must be at least 2 (got 1); "
      "allowed: 2..3600"]),
    ("scaledown_window_3601", "autoscaling:\n  scaledown_window: 3601\n",
     ["deploy.yaml:2:3: autoscaling.scaledown_window: must be at most 3600 (got 3601); "
      "allowed: 2..3600"]),
    ("gpu_count_0", "gpu:\n  count: 0\n",
     ["deploy.yaml:2:3: gpu.count: must be at least 1 (got 0); allowed: 1..8"]),
    ("gpu_count_9", "gpu:\n  count: 9\n",
     ["deploy.yaml:2:3: gpu.count: must be at most 8 (got 9); allowed: 1..8"]),
    ("gpu_compact_count_0", 'gpu: "H100:0"\n',
     ["deploy.yaml:1:1: gpu.count: must be at least 1 (got 0); allowed: 1..8"]),
    ("min_above_max", "autoscaling:\n  min_containers: 5\n  max_containers: 2\n",
     ["deploy.yaml:2:3: autoscaling.min_containers: min_containers must not exceed "
      "max_containers (got min_containers=5, max_containers=2); lower min_containers or "
      "raise max_containers"]),
    ("max_containers_0", "autoscaling:\n  max_containers: 0\n",
     ["deploy.yaml:2:3: autoscaling.max_containers: must be at least 1 (got 0); "
      "allowed: 1..1000"]),
    ("buffer_containers_101", "autoscaling:\n  buffer_containers: 101\n",
     ["deploy.yaml:2:3: autoscaling.buffer_containers: must be at most 100 (got 101); "
      "allowed: 0..100"]),
    ("target_above_max_inputs", "concurrency:\n  max_inputs: 2\n  target_inputs: 3\n",
     ["deploy.yaml:3:3: concurrency.target_inputs: target_inputs must not exceed max_inputs "
      "(got target_inputs=3, max_inputs=2); lower target_inputs or raise max_inputs"]),
    ("max_inputs_0", "concurrency:\n  max_inputs: 0\n",
     ["deploy.yaml:2:3: concurrency.max_inputs: must be at least 1 (got 0); allowed: 1..1000"]),
    ("request_timeout_0", "timeouts:\n  request: 0\n",
     ["deploy.yaml:2:3: timeouts.request: must be at least 1 (got 0); allowed: 1..86400"]),
    ("startup_timeout_0", "timeouts:\n  startup: 0\n",
     ["deploy.yaml:2:3: timeouts.startup: must be at least 1 (got 0); allowed: 1..86400"]),
    ("startup_timeout_86401", "timeouts:\n  startup: 86401\n",
     ["deploy.yaml:2:3: timeouts.startup: must be at most 86400 (got 86401); "
      "allowed: 1..86400"]),
    ("port_0", "local:\n  port: 0\n",
     ["deploy.yaml:2:3: local.port: must be at least 1 (got 0); allowed: 1..65535"]),
    ("port_65536", "local:\n  port: 65536\n",
     ["deploy.yaml:2:3: local.port: must be at most 65535 (got 65536); allowed: 1..65535"]),
    ("queue_size_0", "server:\n  queue_size: 0\n",
     ["deploy.yaml:2:3: server.queue_size: must be at least 1 (got 0); allowed: 1..10000"]),
    ("queue_size_10001", "server:\n  queue_size: 10001\n",
     ["deploy.yaml:2:3: server.queue_size: must be at most 10000 (got 10001); "
      "allowed: 1..10000"]),
    ("max_body_mb_513", "server:\n  max_body_mb: 513\n",
     ["deploy.yaml:2:3: server.max_body_mb: must be at most 512 (got 513); allowed: 1..512"]),
    ("negative_min_containers", "autoscaling:\n  min_containers: -1\n",
     ["deploy.yaml:2:3: autoscaling.min_containers: must be at least 0 (got -1); "
      "allowed: 0..1000"]),

    # Typos and unknown keys.
    ("typo_section", "autoscalng:\n  min_containers: 1\n",
     ["deploy.yaml:1:1: autoscalng: unknown key 'autoscalng'; did you mean 'autoscaling'?"]),
    ("typo_field", "gpu:\n  tpye: H100\n",
     ["deploy.yaml:2:3: gpu.tpye: unknown key 'tpye'; did you mean 'type'?"]),
    ("typo_deep", "autoscaling:\n  scaledown_windw: 60\n",
     ["deploy.yaml:2:3: autoscaling.scaledown_windw: unknown key 'scaledown_windw'; "
      "did you mean 'scaledown_window'?"]),
    ("unknown_key_no_match", "zebra: 1\n",
     [f"deploy.yaml:1:1: zebra: unknown key 'zebra'; known keys here: {TOP_KEYS}"]),
    ("unknown_key_in_leaf", "gpu:\n  colour: red\n",
     ["deploy.yaml:2:3: gpu.colour: unknown key 'colour'; known keys here: type, count, "
      "fallbacks"]),

    # Wrong types.
    ("count_word", "gpu:\n  count: two\n",
     ["deploy.yaml:2:3: gpu.count: expected a whole number (got 'two'); write a whole "
      "number of GPUs, e.g. 1"]),
    ("count_quoted", 'gpu:\n  count: "2"\n',
     ["deploy.yaml:2:3: gpu.count: expected a whole number (got '2'); write it without "
      "quotes"]),
    ("count_boolean", "gpu:\n  count: true\n",
     ["deploy.yaml:2:3: gpu.count: expected a whole number (got true); write a whole "
      "number of GPUs, e.g. 1"]),
    ("count_float", "gpu:\n  count: 2.0\n",
     ["deploy.yaml:2:3: gpu.count: expected a whole number (got 2.0); write a whole "
      "number of GPUs, e.g. 1"]),
    ("window_with_unit", "autoscaling:\n  scaledown_window: 5m\n",
     ["deploy.yaml:2:3: autoscaling.scaledown_window: expected a whole number (got '5m'); "
      "write a whole number of seconds, e.g. 300"]),
    ("bool_as_text", 'model:\n  allow_moving_revision: "yes"\n',
     ["deploy.yaml:2:3: model.allow_moving_revision: expected true or false (got 'yes')"]),
    ("section_as_list", "autoscaling: [1, 2]\n",
     ["deploy.yaml:1:1: autoscaling: expected a mapping of settings (got a list); write "
      "key: value lines below it"]),
    ("section_empty", "autoscaling:\n",
     ["deploy.yaml:1:1: autoscaling: is empty (null); write a value, or remove the key to "
      "use the default"]),
    ("secrets_as_text", "secrets: moondream-api-key\n",
     ["deploy.yaml:1:1: secrets: expected a list (got 'moondream-api-key'); write [a, b] "
      "or one '- item' line per entry"]),
    ("name_as_number", "app:\n  name: 123\n",
     ['deploy.yaml:2:3: app.name: YAML read the unquoted value 123 as a number, but this '
      'field is text; write it in quotes: "123"']),
    ("literal_choice", "target: kubernetes\n",
     ["deploy.yaml:1:1: target: invalid value (got 'kubernetes'); use one of: 'modal' or "
      "'local'"]),
    ("python_version_float", "app:\n  python_version: 3.10\n",
     ['deploy.yaml:2:3: app.python_version: YAML read the unquoted value 3.10 as a number, '
      'but this field is text; write it in quotes: "3.10"']),
    ("dtype_number", "model:\n  dtype: 16\n",
     ["deploy.yaml:2:3: model.dtype: invalid value (got 16); use one of: 'auto', "
      "'bfloat16', 'float16' or 'float32'"]),
    ("cloud_boolean_word", "placement:\n  cloud: no\n",
     ['deploy.yaml:2:3: placement.cloud: YAML 1.1 reads the unquoted word no as false; '
      'write true or false, or "no" in quotes if it is text']),
    ("version_2", "version: 2\n",
     ["deploy.yaml:1:1: version: invalid value (got 2); use one of: 1"]),

    # Duplicate keys, merge keys, YAML syntax.
    ("duplicate_key", "gpu:\n  type: A10G\n  type: H100\n",
     ["deploy.yaml:3:3: gpu.type: duplicate key 'type' (first written on line 2); keep "
      "only one"]),
    ("duplicate_section", "gpu: T4\nmodel: {dtype: float16}\ngpu: H100\n",
     ["deploy.yaml:3:1: gpu: duplicate key 'gpu' (first written on line 1); keep only one"]),
    ("merge_key", "gpu:\n  <<: {type: T4}\n",
     ["deploy.yaml:2:3: gpu: YAML merge keys (<<) are not supported; write the settings "
      "out in full"]),
    ("syntax_error", "gpu: [A10G\n",
     ["deploy.yaml:2:1: invalid YAML syntax: while parsing a flow sequence, expected ',' "
      "or ']', but got '<stream end>'"]),
    ("tab_indent", "gpu:\n\ttype: T4\n",
     ["deploy.yaml:2:1: invalid YAML syntax: while scanning for the next token, found "
      "character '\\t' that cannot start any token"]),
    ("two_documents", "gpu: T4\n---\ngpu: H100\n",
     ["deploy.yaml:2:1: invalid YAML syntax: expected a single document in the stream, "
      "but found another document"]),
    ("number_key", "1: x\n",
     ["deploy.yaml:1:1: keys must be text (got 1); quote the key"]),
    ("python_tag", "gpu: !!python/object:os.system {}\n",
     ["deploy.yaml:1:6: gpu: the YAML tag !!python/object:os.system is not supported; "
      "remove it and write a plain value"]),
    ("custom_tag", "gpu: !custom x\n",
     ["deploy.yaml:1:6: gpu: the YAML tag !custom is not supported; remove it and write a "
      "plain value"]),

    # Names that Modal removed.
    ("keep_warm", "autoscaling:\n  keep_warm: 1\n",
     [f"deploy.yaml:2:3: autoscaling.keep_warm: keep_warm {REMOVED} "
      "autoscaling.min_containers instead"]),
    ("container_idle_timeout", "container_idle_timeout: 60\n",
     [f"deploy.yaml:1:1: container_idle_timeout: container_idle_timeout {REMOVED} "
      "autoscaling.scaledown_window instead"]),
    ("concurrency_limit", "autoscaling:\n  concurrency_limit: 4\n",
     [f"deploy.yaml:2:3: autoscaling.concurrency_limit: concurrency_limit {REMOVED} "
      "autoscaling.max_containers instead"]),
    ("allow_concurrent_inputs", "concurrency:\n  allow_concurrent_inputs: 8\n",
     [f"deploy.yaml:2:3: concurrency.allow_concurrent_inputs: allow_concurrent_inputs "
      f"{REMOVED} concurrency.max_inputs instead"]),

    # YAML 1.1 readings.
    ("unquoted_date", "model:\n  revision: 2025-06-21\n",
     ['deploy.yaml:2:3: model.revision: YAML read the unquoted value 2025-06-21 as a date, '
      'but this field is text; write it in quotes: "2025-06-21"']),
    ("on_as_boolean", "model:\n  allow_moving_revision: on\n",
     ['deploy.yaml:2:3: model.allow_moving_revision: YAML 1.1 reads the unquoted word on '
      'as true; write true or false, or "on" in quotes if it is text']),
    ("yes_in_text_field", "auth:\n  mode: yes\n",
     ['deploy.yaml:2:3: auth.mode: YAML 1.1 reads the unquoted word yes as true; write '
      'true or false, or "yes" in quotes if it is text']),
    ("octal", "autoscaling:\n  scaledown_window: 0300\n",
     ["deploy.yaml:2:21: autoscaling.scaledown_window: 0300 has a leading zero, which YAML "
      "1.1 reads as the octal number 192; write it without the leading zero, or in quotes "
      "if it is text"]),
    ("sexagesimal", "autoscaling:\n  scaledown_window: 1:30\n",
     ['deploy.yaml:2:21: autoscaling.scaledown_window: 1:30 is read by YAML 1.1 as the '
      'base-60 number 90; write it in quotes ("1:30") if it is text']),

    # Revisions.
    ("moving_branch_main", "model:\n  revision: main\n",
     ["deploy.yaml:2:3: model.revision: revision 'main' is a moving branch, so each deploy "
      "may serve other weights; pin a release tag such as 2025-06-21 or a 40-hex commit "
      "sha, or set model.allow_moving_revision: true"]),
    ("unknown_tag", 'model:\n  revision: "2099-01-01"\n',
     [f"deploy.yaml:2:3: model.revision: unknown revision '2099-01-01' for "
      f"vikhyatk/moondream2; known tags: {KNOWN_TAGS}, or pin a 40-hex commit sha"]),
    ("unsupported_tag", 'model:\n  revision: "2024-08-26"\n',
     ["deploy.yaml:2:3: model.revision: revision '2024-08-26' is not supported: uses the "
      "2024 model API (encode_image + answer_question), which the serving runtime does "
      "not implement; pin 2025-01-09 or later"]),

    # GPU names.
    ("unknown_gpu", "gpu:\n  type: NOTAGPU\n",
     [f"deploy.yaml:2:3: gpu.type: unknown GPU type (got 'NOTAGPU'); use one of: {GPUS}"]),
    ("gpu_near_miss", "gpu:\n  type: H10\n",
     [f"deploy.yaml:2:3: gpu.type: unknown GPU type (got 'H10'); use one of: {GPUS} "
      "(did you mean H100?)"]),
    ("gpu_very_long", f"gpu:\n  type: {'x' * 5000}\n",
     [f"deploy.yaml:2:3: gpu.type: unknown GPU type (got '{'x' * 76}...); use one of: {GPUS}"]),
    ("gpu_bang_not_h100", 'gpu: "A10G!"\n',
     ["deploy.yaml:1:1: gpu.type: '!' only applies to H100, where it forbids Modal's "
      "upgrade to H200 (got 'A10G!'); remove the '!'"]),
    ("gpu_bad_compact_count", 'gpu: "H100:abc"\n',
     ["deploy.yaml:1:1: gpu: invalid GPU count in 'H100:abc'; write TYPE or TYPE:COUNT, "
      "e.g. H100:2"]),
    ("gpu_unknown_fallback", "gpu:\n  fallbacks: [L4, X1]\n",
     [f"deploy.yaml:2:3: gpu.fallbacks: unknown GPU type (got 'X1'); use one of: {GPUS}"]),
    ("gpu_repeated_fallback", "gpu:\n  type: a10g\n  fallbacks: [A10G]\n",
     ["deploy.yaml:3:3: gpu.fallbacks: GPU types must not repeat in type and fallbacks "
      "(got A10G twice); list each type once"]),
    ("bfloat16_on_t4", "gpu: T4\n",
     ["deploy.yaml:1:1: model.dtype: bfloat16 is not supported on T4 (gpu.type=T4); set "
      "model.dtype: float16"]),

    # Mount paths.
    ("mount_root", "volume:\n  mount_path: /\n",
     [f"deploy.yaml:2:3: volume.mount_path: {RESERVED_MOUNT} (got '/'); {ELSEWHERE}"]),
    ("mount_slash_root", "volume:\n  mount_path: /root\n",
     [f"deploy.yaml:2:3: volume.mount_path: {RESERVED_MOUNT} (got '/root'); {ELSEWHERE}"]),
    ("mount_tmp_trailing_slash", "volume:\n  mount_path: /tmp/\n",
     [f"deploy.yaml:2:3: volume.mount_path: {RESERVED_MOUNT} (got '/tmp/'); {ELSEWHERE}"]),
    ("mount_relative", "volume:\n  mount_path: weights\n",
     ["deploy.yaml:2:3: volume.mount_path: mount_path must be an absolute path (got "
      "'weights'); write it from /, e.g. /weights"]),
    ("mount_dot_dot", "volume:\n  mount_path: /weights/../root\n",
     ["deploy.yaml:2:3: volume.mount_path: mount_path must not contain '.' or '..' (got "
      "'/weights/../root'); write the path without them"]),

    # Web labels.
    ("label_upper", "app:\n  label: Moondream\n",
     [f"deploy.yaml:2:3: app.label: invalid value (got 'Moondream'); {LABEL_HINT}"]),
    ("label_double_dash", "app:\n  label: moon--dream\n",
     ["deploy.yaml:2:3: app.label: label must not contain '--', which separates workspace "
      "and label in the URL (got 'moon--dream'); use a single '-'"]),
    ("label_leading_dash", "app:\n  label: -moon\n",
     [f"deploy.yaml:2:3: app.label: invalid value (got '-moon'); {LABEL_HINT}"]),
    ("label_64_chars", f"app:\n  label: {'a' * 64}\n",
     [f"deploy.yaml:2:3: app.label: too long (64 characters, got '{'a' * 64}'); at most 63 "
      "characters"]),

    # Hostile strings: each must be rejected before it can reach the rendered app file.
    ("name_with_quote", 'app:\n  name: "moon\\"dream"\n',
     [f"deploy.yaml:2:3: app.name: invalid value (got 'moon\"dream'); {NAME_HINT}"]),
    ("name_with_newline", 'app:\n  name: "moon\\ndream"\n',
     [f"deploy.yaml:2:3: app.name: invalid value (got 'moon\\ndream'); {NAME_HINT}"]),
    ("name_with_template", 'app:\n  name: "{{ config }}"\n',
     [f"deploy.yaml:2:3: app.name: invalid value (got '{{{{ config }}}}'); {NAME_HINT}"]),
    ("name_with_nul", 'app:\n  name: "a\\0b"\n',
     [f"deploy.yaml:2:3: app.name: invalid value (got 'a\\x00b'); {NAME_HINT}"]),
    ("name_very_long", f"app:\n  name: {LONG_NAME}\n",
     [f"deploy.yaml:2:3: app.name: too long (5000 characters, got '{'a' * 76}...); at most "
      "64 characters"]),
    ("secret_with_code", "secrets: ['x\"; import os']\n",
     [f"deploy.yaml:1:11: secrets[0]: invalid value (got 'x\"; import os'); {NAME_HINT}"]),
    ("host_with_newline", 'local:\n  host: "a\\nb"\n',
     ["deploy.yaml:2:3: local.host: invalid value (got 'a\\nb'); use a host name or an IP "
      "address, e.g. 127.0.0.1 or 0.0.0.0"]),
    ("weights_dir_with_nul", 'local:\n  weights_dir: "w\\0"\n',
     ["deploy.yaml:2:3: local.weights_dir: invalid value (got 'w\\x00'); remove the control "
      "characters (newline, tab, NUL) from the path"]),
    ("revision_with_braces", 'model:\n  repo: acme/vlm\n  revision: "{{ x }}"\n',
     ["deploy.yaml:3:3: model.revision: invalid value (got '{{ x }}'); use a release tag "
      "such as 2025-06-21 or a 40-hex commit sha: letters, digits, '.', '_', '/' and '-', "
      "at most 128 characters"]),
    ("key_env_with_space", 'auth:\n  key_env: "A B"\n',
     ["deploy.yaml:2:3: auth.key_env: invalid value (got 'A B'); use letters, digits and "
      "'_', not starting with a digit, e.g. MOONDREAM_API_KEY"]),

    ("key_with_newline", '"gpu\\nerror: fake": 1\n',
     ["deploy.yaml:1:1: 'gpu\\nerror: fake': unknown key 'gpu\\nerror: fake'; known keys "
      f"here: {TOP_KEYS}"]),
    ("key_very_long", f"{'k' * 200}: 1\n",
     [f"deploy.yaml:1:1: '{'k' * 76}...: unknown key '{'k' * 76}...; known keys here: "
      f"{TOP_KEYS}"]),
    ("key_with_python_tag", "!!python/name:os.system : 1\n",
     ["deploy.yaml:1:1: keys must be text (got ''); quote the key"]),
    ("key_is_list", "? [a, b]\n: 1\n",
     ["deploy.yaml:1:3: keys must be text (got a collection); quote the key"]),
    ("environment_name_with_newline", 'environments:\n  "dev\\nerror: x": {}\n',
     ["deploy.yaml:2:3: environments: invalid environment name 'dev\\nerror: x'; use "
      "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 "
      "characters"]),
    ("environments_as_list", "environments: [dev, prod]\n",
     ["deploy.yaml:1:1: environments: must be a mapping of environment name to settings"]),
    ("environments_nested", "environments:\n  dev:\n    environments: {}\n",
     ["deploy.yaml:3:5: environments: environments is only allowed at the top level of the "
      "deploy file, not inside an environment or in --set; pick an environment with --env "
      "NAME"]),

    # Whole-file problems.
    ("empty_file", "",
     ["deploy.yaml:1:1: the file is empty; start from the deploy.yaml in the moondream_iac "
      "repository or run: python -m moondream_iac schema"]),
    ("comments_only", "# nothing here\n",
     ["deploy.yaml:1:1: the file is empty; start from the deploy.yaml in the moondream_iac "
      "repository or run: python -m moondream_iac schema"]),
    ("list_at_top", "- gpu: T4\n- gpu: H100\n",
     ["deploy.yaml:1:1: the top level must be a mapping of settings (got a list); write "
      "key: value lines"]),
    ("scalar_at_top", "A10G\n",
     ["deploy.yaml:1:1: the top level must be a mapping of settings (got a single value); "
      "write key: value lines"]),
    ("too_deep", "zebra: " + "[" * 40 + "]" * 40 + "\n",
     [f"deploy.yaml:1:1: zebra: unknown key 'zebra'; known keys here: {TOP_KEYS}",
      "deploy.yaml:1:40: zebra" + "[0]" * 32 + ": nesting deeper than 32 levels; no field "
      "of a deploy file nests that deep, so flatten the value"]),
    ("control_character", "gpu: T4\napp:\n  name: a\x1fb\n",
     ["deploy.yaml:3:10: the character U+001F is not allowed in YAML; remove it, or write it "
      "as an escape such as \\u0007 inside double quotes"]),
    ("alias_bomb",
     "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
     "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
     "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
     "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     ["deploy.yaml: the file holds more than 10000 values once YAML aliases (*name) are "
      "expanded; write the settings out instead of repeating aliases"]),
    ("nested_beyond_parser", "zebra: " + "[" * 5000 + "]" * 5000 + "\n",
     ["deploy.yaml: the YAML is nested too deeply to read; a deploy file needs at most 32 "
      "levels"]),

    # Several problems in one file are all reported, in file order.
    ("several_problems", "gpu:\n  count: 9\nautoscaling:\n  scaledown_window: 1\n"
                         "keep_warm: 2\n",
     ["deploy.yaml:2:3: gpu.count: must be at most 8 (got 9); allowed: 1..8",
      "deploy.yaml:4:3: autoscaling.scaledown_window: must be at least 2 (got 1); "
      "allowed: 2..3600",
      f"deploy.yaml:5:1: keep_warm: keep_warm {REMOVED} autoscaling.min_containers instead"]),
]

# (case id, file text, dotted field, expected value once loaded)
ACCEPTED = [
    ("scaledown_window_2", "autoscaling:\n  scaledown_window: 2\n",
     "autoscaling.scaledown_window", 2),
    ("scaledown_window_3600", "autoscaling:\n  scaledown_window: 3600\n",
     "autoscaling.scaledown_window", 3600),
    ("gpu_count_1", "gpu:\n  count: 1\n", "gpu.count", 1),
    ("gpu_count_8", "gpu:\n  count: 8\n", "gpu.count", 8),
    ("min_equals_max", "autoscaling:\n  min_containers: 2\n  max_containers: 2\n",
     "autoscaling.min_containers", 2),
    ("target_equals_max", "concurrency:\n  max_inputs: 4\n  target_inputs: 4\n",
     "concurrency.target_inputs", 4),
    ("timeouts_1", "timeouts:\n  request: 1\n  startup: 1\n", "timeouts.startup", 1),
    ("timeouts_86400", "target: local\ntimeouts:\n  request: 86400\n", "timeouts.request",
     86400),
    ("port_1", "local:\n  port: 1\n", "local.port", 1),
    ("port_65535", "local:\n  port: 65535\n", "local.port", 65535),
    ("queue_size_1", "server:\n  queue_size: 1\n", "server.queue_size", 1),
    ("queue_size_10000", "server:\n  queue_size: 10000\n", "server.queue_size", 10000),
    ("gpu_lowercase", "gpu:\n  type: h100\n", "gpu.type", "H100"),
    ("gpu_mixed_case", "gpu:\n  type: a10g\n", "gpu.type", "A10G"),
    ("gpu_alias", "gpu:\n  type: a100\n", "gpu.type", "A100-40GB"),
    ("gpu_no_upgrade", 'gpu:\n  type: "H100!"\n', "gpu.type", "H100!"),
    ("gpu_compact", 'gpu: "h100:2"\n', "gpu.count", 2),
    ("gpu_fallback_text", "gpu:\n  fallbacks: l4\n", "gpu.fallbacks", ("L4",)),
    ("t4_float16", "gpu: T4\nmodel:\n  dtype: float16\n", "gpu.type", "T4"),
    ("mount_trailing_slash", "volume:\n  mount_path: /weights/\n", "volume.mount_path",
     "/weights"),
    ("mount_double_slash", "volume:\n  mount_path: //data//w\n", "volume.mount_path",
     "/data/w"),
    ("main_when_allowed", "model:\n  revision: main\n  allow_moving_revision: true\n",
     "model.revision", "main"),
    ("commit_sha", 'model:\n  revision: "0123456789abcdef0123456789abcdef01234567"\n',
     "model.revision", "0123456789abcdef0123456789abcdef01234567"),
    ("name_max_length", f"app:\n  name: {'a' * 64}\n", "app.name", "a" * 64),
    ("label_max_length", f"app:\n  label: {'a' * 63}\n", "app.label", "a" * 63),
    ("quoted_yes_in_text", 'auth:\n  mode: "none"\n', "auth.mode", "none"),
    ("utf8_bom", "\ufeffgpu: T4\nmodel:\n  dtype: float16\n", "gpu.type", "T4"),
    ("ipv6_host", 'local:\n  host: "::1"\n', "local.host", "::1"),
]


def problem_lines(folder: Path, text: str | bytes) -> list[str]:
    """Write deploy.yaml into ``folder``, validate it as `validate` does, return the problems."""
    path = folder / "deploy.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_every_environment(Path("deploy.yaml"), environ={})
    return [problem.format() for problem in raised.value.problems]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_broken_file_message(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)

    assert problem_lines(tmp_path, text) == expected


def test_broken_table_covers_thirty_files():
    assert len(BROKEN) >= 30
    assert len({case[0] for case in BROKEN}) == len(BROKEN)


@pytest.mark.parametrize(("text", "field", "expected"), [case[1:] for case in ACCEPTED],
                         ids=[case[0] for case in ACCEPTED])
def test_accepted_file_value(tmp_path, monkeypatch, text, field, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.yaml").write_text(text, encoding="utf-8")

    spec = load_config(Path("deploy.yaml"), environ={}).spec

    value = spec
    for part in field.split("."):
        value = getattr(value, part)
    assert value == expected


def test_not_utf8_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    lines = problem_lines(tmp_path, b"app:\n  name: caf\xe9\n")

    assert lines == ["deploy.yaml:2:12: the file is not valid UTF-8 (byte 0xe9); save it "
                     "as UTF-8"]


def test_nul_bytes_in_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    lines = problem_lines(tmp_path, b"gpu: T4\x00\n")

    assert lines == ["deploy.yaml: the file contains NUL bytes; is it a binary file?"]


def test_huge_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "# padding\n" * (MAX_FILE_BYTES // 10 + 1)

    lines = problem_lines(tmp_path, text)

    assert lines == [f"deploy.yaml: the file is {len(text)} bytes, larger than the "
                     f"{MAX_FILE_BYTES}-byte limit for a config file; check that -f names "
                     "the right file"]


def test_directory_instead_of_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()

    with pytest.raises(ConfigError) as raised:
        load_config(Path("conf"))

    assert [p.format() for p in raised.value.problems] == [
        "conf: is a folder, not a file; pass a YAML file with -f PATH"]


def test_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as raised:
        load_config(Path("nope.yaml"))

    assert [p.format() for p in raised.value.problems] == [
        "nope.yaml: file not found; pass the config with -f PATH (default: deploy.yaml in "
        "the current folder)"]


def test_environment_overlay_problem_located(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.yaml").write_text(
        "gpu: A10G\nenvironments:\n  dev:\n    gpu:\n      count: 0\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_every_environment(Path("deploy.yaml"), environ={})

    assert [p.format() for p in raised.value.problems] == [
        "deploy.yaml:5:7: gpu.count: must be at least 1 (got 0); allowed: 1..8"]


def test_set_value_traps_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.yaml").write_text("gpu: A10G\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), overrides=["gpu.count=0300", "auth.mode=on",
                                                     "gpu.tpye=T4"], environ={})

    assert [p.format() for p in raised.value.problems] == [
        "--set #1: gpu.count: 0300 has a leading zero, which YAML 1.1 reads as the octal "
        "number 192; write it without the leading zero, or in quotes if it is text",
        '--set #2: auth.mode: YAML 1.1 reads the unquoted word on as true; write true or '
        'false, or "on" in quotes if it is text',
        "--set #3: gpu.tpye: unknown key 'tpye'; did you mean 'type'?",
    ]


def test_malformed_set_assignment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deploy.yaml").write_text("gpu: A10G\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_config(Path("deploy.yaml"), overrides=["gpu.count"], environ={})

    assert [p.format() for p in raised.value.problems] == [
        "--set #1: invalid --set 'gpu.count'; write FIELD.PATH=VALUE, e.g. "
        "autoscaling.min_containers=1"]


# (case id, file text or None for a folder, the lines expected on stderr)
CLI_CASES = [
    ("scaledown_window_1", "autoscaling:\n  scaledown_window: 1\n",
     ["error: deploy.yaml:2:3: autoscaling.scaledown_window: must be at least 2 (got 1); "
      "allowed: 2..3600", "1 problem found"]),
    ("keep_warm", "keep_warm: 1\n",
     [f"error: deploy.yaml:1:1: keep_warm: keep_warm {REMOVED} autoscaling.min_containers "
      "instead", "1 problem found"]),
    ("duplicate_key", "gpu: A10G\ngpu: H100\n",
     ["error: deploy.yaml:2:1: gpu: duplicate key 'gpu' (first written on line 1); keep "
      "only one", "1 problem found"]),
    ("list_at_top", "- a\n",
     ["error: deploy.yaml:1:1: the top level must be a mapping of settings (got a list); "
      "write key: value lines", "1 problem found"]),
    ("custom_tag", "gpu: !custom x\n",
     ["error: deploy.yaml:1:6: gpu: the YAML tag !custom is not supported; remove it and "
      "write a plain value", "1 problem found"]),
    ("name_with_markup", 'app:\n  name: "[red]x[/red]"\n',
     [f"error: deploy.yaml:2:3: app.name: invalid value (got '[red]x[/red]'); {NAME_HINT}",
      "1 problem found"]),
]


def run_validate(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m moondream_iac validate`` in ``folder`` with a wide terminal."""
    environment = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "moondream_iac", "validate", *arguments],
        cwd=folder, capture_output=True, text=True, env=environment, timeout=60,
    )


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CLI_CASES],
                         ids=[case[0] for case in CLI_CASES])
def test_cli_reports_broken_file(tmp_path, text, expected):
    (tmp_path / "deploy.yaml").write_text(text, encoding="utf-8")

    result = run_validate(tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == expected
    assert result.stdout == ""


def test_cli_not_utf8_exit_code(tmp_path):
    (tmp_path / "deploy.yaml").write_bytes(b"\xff\xfe\x00g\x00p\x00u\x00")

    result = run_validate(tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "deploy.yaml:1:1: the file is not valid UTF-8 (byte 0xff)" in result.stderr


def test_cli_missing_file_exit_code(tmp_path):
    result = run_validate(tmp_path, "-f", "absent.yaml")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "absent.yaml: file not found" in result.stderr


def test_cli_directory_exit_code(tmp_path):
    (tmp_path / "conf").mkdir()

    result = run_validate(tmp_path, "-f", "conf")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "conf: is a folder, not a file" in result.stderr
