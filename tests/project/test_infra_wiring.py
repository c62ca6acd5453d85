"""What can be proved about infra/'s wiring without Azure or a Bicep compiler: every module file exists,
every parameter passed is declared, every required one is passed, every `.outputs.X` read is declared;
main.parameters.json and azure.yaml agree with main.bicep."""

from __future__ import annotations

import json
import re

from tests.support.bicep import INFRA, ROOT, all_bicep, bicep

# --------------------------------------------------------------------------------------------------------
# Wiring: modules, parameters, outputs, azd.


def test_modules_wire_up():
    checked = 0
    for file in all_bicep():
        for module in file.modules:
            target = (file.path.parent / module.path).resolve()
            assert target.is_file(), f"{file.path.name}: module {module.symbol} -> missing {module.path}"
            declared = bicep(str(target.relative_to(INFRA))).params
            passed = module.body.child("params").keys()
            undeclared = sorted(set(passed) - set(declared))
            assert not undeclared, f"{module.symbol}: passes undeclared params {undeclared}"
            required = sorted(n for n, p in declared.items() if p.default is None and n not in passed)
            assert not required, f"{module.symbol}: misses required params {required}"
            checked += 1
        for symbol, output in re.findall(r"\b(\w+)\.outputs\.(\w+)", file.masked):
            module = next((m for m in file.modules if m.symbol == symbol), None)
            assert module, f"{file.path.name}: {symbol}.outputs.{output} but no module {symbol}"
            target = (file.path.parent / module.path).resolve()
            outputs = bicep(str(target.relative_to(INFRA))).outputs
            assert output in outputs, f"{file.path.name}: module {symbol} has no output {output}"
    assert checked >= 7


def test_every_symbol_used_in_a_module_is_declared():
    """Catches a typo the compiler would: an identifier that is neither param, var, resource nor module."""
    builtins = {
        "true", "false", "null", "if", "for", "in", "existing", "resource", "module", "param", "var",
        "output", "targetScope", "subscription", "resourceGroup", "tenant", "environment", "deployment",
        "uniqueString", "toLower", "union", "empty", "guid", "subscriptionResourceId", "string", "int",
        "bool", "object", "array", "dependsOn", "description", "minLength", "maxLength", "minValue",
        "maxValue", "allowed", "secure", "metadata",
    }  # fmt: skip
    for file in all_bicep():
        declared = set(re.findall(r"^(?:param|var|resource|module|output)\s+(\w+)", file.masked, re.M))
        loop_vars = set(re.findall(r"\bfor\s+(\w+)\s+in\b", file.masked))
        code = re.sub(r"^@\w+", "", file.masked, flags=re.M)
        # Identifiers in value position: after `:`, `=`, `(`, `,`, `?`, `!`, `[` or an operator, or `${`.
        used = set(re.findall(r"(?:[:=(,?!\[]|\$\{)\s*([A-Za-z_]\w*)\b(?!\s*:)", code))
        interpolated = re.findall(r"\$\{\s*([A-Za-z_]\w*)", file.text)
        unknown = sorted((used | set(interpolated)) - declared - loop_vars - builtins)
        assert not unknown, f"{file.path.name}: undeclared identifiers {unknown}"


def test_main_parameters_match_main_bicep():
    params = bicep("main.bicep").params
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(azd) <= set(params), (
        f"main.parameters.json sets unknown params {sorted(set(azd) - set(params))}"
    )
    required = sorted(n for n, p in params.items() if p.default is None and n not in azd)
    assert not required, f"main.parameters.json misses required params {required}"
    assert azd["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert azd["location"]["value"] == "${AZURE_LOCATION}"
    assert azd["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_is_subscription_scoped_with_azd_outputs_and_tags():
    main = bicep("main.bicep")
    assert re.search(r"^targetScope\s*=\s*'subscription'", main.text, re.M)
    required = {
        "AZURE_LOCATION", "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME",
        "AZURE_KEY_VAULT_NAME", "KEY_VAULT_URL", "SNAPSHOT_STORAGE_ACCOUNT_URL", "SNAPSHOT_CONTAINER",
    }  # fmt: skip
    assert required <= main.outputs, f"missing outputs {sorted(required - main.outputs)}"
    # azure-identity on a laptop would take AZURE_CLIENT_ID from `azd env get-values` for its own.
    assert "AZURE_CLIENT_ID" not in main.outputs
    assert re.search(r"'azd-env-name':\s*environmentName", main.text)
    assert re.search(r"'azd-service-name':\s*serviceName", main.text)


def test_azure_yaml_deploys_the_tagged_function_app():
    text = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n(?:\s*#.*\n)*  (\w[\w-]*):\n((?:    .*\n|\s*#.*\n)+)", text, re.M)
    assert service, "azure.yaml has one service"
    body = dict(re.findall(r"^    (\w+):\s*(\S+)", service.group(2), re.M))
    assert body == {"project": ".", "language": "python", "host": "function"}
    service_name = re.search(r"^var serviceName = '([^']+)'", bicep("main.bicep").text, re.M)
    assert service_name
    assert service_name.group(1) == service.group(1)


def test_funcignore_keeps_the_package_small():
    lines = set((ROOT / ".funcignore").read_text().split())
    needed = {"tests/", "infra/", ".venv*", "node_modules/", "local.settings.json", ".git*"}
    assert needed <= lines, f".funcignore misses {sorted(needed - lines)}"
    assert "requirements.txt" not in lines
    assert "function_app.py" not in lines
    assert "shared/" not in lines
