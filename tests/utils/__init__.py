"""What tests, benchmarks and the demo share: the sandbox's process (sandbox_control), real ansible-playbook runs
(playbooks), real ansible-rulebook activations (rulebook_harness), the local estates (estate, bluegreen_estate,
fleet) and the running self-healing loop (loops, chatops). Imported as `utils` (tests/ is on the virtualenv's import
path after `make venv`)."""
