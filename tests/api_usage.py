"""Which attributes of GPU libraries a Python source touches, collected with ``ast``.

``tests/test_gpu_api.py`` checks the collected names against the real libraries, so a misspelt
TensorRT or CUDA call fails in CI instead of on a user's GPU. Nothing here is typed by hand per
call site; a value is known to be a library object in these ways:

* roots: an import listed in ``IMPORTS`` (``from cuda.bindings import runtime as cudart``); an
  annotation the caller maps to a library (``trt: ModuleType`` is the TensorRT module in the
  TensorRT files, which import their flavour by name with importlib); ``ctypes.CDLL(name)`` where
  string constants reaching ``name`` name a library in ``CDLL_NAMES``; a function imported from an
  earlier file of the same :func:`collect` call that returns a library object;
* ``root.A.B`` stays a library object (a class, an enum member, a function); calling a class gives
  an instance of it; calling a function or a method of an instance gives what its docstring
  signature returns (pybind11 writes ``create_network(self: Builder, flags: int = 0) ->
  tensorrt_rtx.INetworkDefinition``), read from the real module given in ``libraries``; reading a
  property gives what its getter's docstring returns;
* the types flow through assignments (tuples unpacked item by item, ``for`` over lists), ``self.x``
  attributes, annotations, returns, and the calls of functions, methods and classes defined in the
  same file (argument types become parameter types, or the fields of a dataclass or NamedTuple
  without ``__init__``), repeated until nothing changes; a name given two different types becomes
  unknown and is reported in ``conflicts``. Only names, not scopes, are followed: ``x`` is one type
  in one function, whatever branch assigns it;
* ``getattr(obj, "name")`` and ``hasattr(obj, "name")`` count as ``obj.name``; when the name is a
  parameter, the string constants passed for it at the call sites count, each at its call site
  (``self._call("cudaMalloc", n)`` into ``getattr(self.rt, function)``). A computed name
  (``getattr(trt.ComputeCapability, "SM" + cc)``) is listed in ``dynamic``, for a separate check.

Each access becomes a :class:`Use`: the library, the chain of attribute names from the library's
root (``("IBuilderConfig", "set_flag")`` for a method of a builder config, ``("BuilderFlag",
"FP16")`` for an enum member), and file:line. ``python tests/api_usage.py`` prints them.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType

# A module imported under these dotted names is the library on the right.
IMPORTS = {
    "tensorrt": "tensorrt",
    "tensorrt_rtx": "tensorrt",
    "cuda.bindings.runtime": "cudart",
    "cuda.cudart": "cudart",
    "cuda.bindings.driver": "cuda_driver",
    "cuda.cuda": "cuda_driver",
    "pycuda.driver": "pycuda",
}
# ctypes.CDLL of a file whose name starts so is the C library on the right.
CDLL_NAMES = {
    "libcuda.so": "libcuda",
    "nvcuda.dll": "libcuda",
    "libnvidia-ml.so": "nvml",
    "nvml.dll": "nvml",
}
# The documented return types that pybind11 writes as C++ names.
CPP_TYPES = {"nvonnxparser::IParserError": "ParserError"}
_SIGNATURE = re.compile(r"^\s*(?:\d+\.\s+)?\w*\(.*\)\s*->\s*(.+?)\s*$")
_MISSING = object()


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True, order=True)
class Use:
    """``lib``'s root, then the attributes ``chain``, read at ``file:line``; ``nargs``: the
    positional arguments when it is called right there (C functions through ctypes)."""

    lib: str
    chain: tuple[str, ...]
    file: str
    line: int
    nargs: int | None = None

    @property
    def name(self) -> str:
        return ".".join(self.chain)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.name}"


@dataclass(frozen=True)
class Subclass:
    """A class of ours derived from a library class (a TensorRT logger or progress monitor)."""

    lib: str
    base: tuple[str, ...]
    name: str
    methods: frozenset[str]
    file: str
    line: int


@dataclass
class Usage:
    uses: set[Use] = field(default_factory=set)
    subclasses: list[Subclass] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    dynamic: list[tuple[str, str]] = field(default_factory=list)  # (file:line, expression)

    def of(self, lib: str) -> list[Use]:
        return sorted(use for use in self.uses if use.lib == lib)


# -------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Lib:
    """A library object: the module itself (chain ``()``) or what ``module.A.B`` names."""

    lib: str
    chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instance:
    """An instance of the library class ``chain``."""

    lib: str
    chain: tuple[str, ...]


@dataclass(frozen=True)
class Member:
    """``obj.name`` on an :class:`Instance`: a method when called, else a property."""

    lib: str
    chain: tuple[str, ...]


@dataclass(frozen=True)
class Local:
    """An instance of a class defined in the file being read."""

    qualname: str


@dataclass(frozen=True)
class Strings:
    """String constants that reach a name, each with the line it was written on."""

    values: frozenset[tuple[str, int]]


@dataclass(frozen=True)
class Items:
    """A tuple, item by item."""

    items: tuple


@dataclass(frozen=True)
class Seq:
    """A list or set; ``item`` is what iterating it gives."""

    item: object


@dataclass(frozen=True)
class Returns:
    """A function imported from a file read earlier; calling it gives ``value``."""

    value: object


class _Conflict:
    def __repr__(self) -> str:
        return "CONFLICT"


CONFLICT = _Conflict()
_LIBRARY_TYPES = (Lib, Instance, Member)


def join(a, b):
    """What a name holds when it is given ``a`` somewhere and ``b`` elsewhere (None: unknown)."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if isinstance(a, Strings) and isinstance(b, Strings):
        return Strings(a.values | b.values)
    if isinstance(a, Items) and isinstance(b, Items) and len(a.items) == len(b.items):
        return Items(tuple(join(x, y) for x, y in zip(a.items, b.items)))
    if isinstance(a, Seq) and isinstance(b, Seq):
        return Seq(join(a.item, b.item))
    return CONFLICT


def _involves_library(value) -> bool:
    if isinstance(value, _LIBRARY_TYPES):
        return True
    if isinstance(value, Items):
        return any(_involves_library(item) for item in value.items)
    return isinstance(value, Seq) and _involves_library(value.item)


def walk(root, chain: Iterable[str]):
    """``root.a.b...``, or ``_MISSING``."""
    for name in chain:
        root = getattr(root, name, _MISSING)
        if root is _MISSING:
            return _MISSING
    return root


# ------------------------------------------------------------------------------------- reader


@dataclass
class _Function:
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None  # the qualname of the class it is a method of
    parent: str  # the enclosing function's scope, or "<module>"


class _Reader:
    """One file: a few passes until the types settle, then one that records the uses."""

    def __init__(self, source: str, file: str, module: str, project: _Project) -> None:
        self.tree = ast.parse(source, filename=file)
        self.file, self.module, self.project = file, module, project
        self.functions: dict[str, _Function] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.qualnames: dict[ast.AST, str] = {}
        self.methods: dict[str, dict[str, str]] = {}
        self.by_name: dict[str, list[str]] = {}  # plain name -> qualnames of functions, classes
        self.env: dict[str, dict[str, object]] = {"<module>": {}}
        self.attrs: dict[str, dict[str, object]] = {}
        self.returns: dict[str, object] = {}
        self.fixed_returns: set[str] = set()
        self.lib_bases: dict[str, list[Lib]] = {}
        self.recording = False
        self.usage = project.usage
        self._index(self.tree.body, "", None, "<module>")

    # definitions

    def _index(self, body, prefix: str, cls: str | None, parent: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{node.name}"
                self.qualnames[node] = qual
                if cls is None:
                    self.by_name.setdefault(node.name, []).append(qual)
                if isinstance(node, ast.ClassDef):
                    self.classes[qual] = node
                    self.methods[qual], self.attrs[qual] = {}, {}
                    self._index(node.body, qual + ".", qual, parent)
                else:
                    self.functions[qual] = _Function(node, cls, parent)
                    self.env[qual] = {}
                    if cls is not None:
                        self.methods[cls][node.name] = qual
                    self._index(node.body, qual + ".", None, qual)
            else:
                for child in ast.iter_child_nodes(node):  # definitions under if/try/with
                    if isinstance(child, ast.stmt):
                        self._index([child], prefix, cls, parent)

    def run(self) -> None:
        for _ in range(50):
            before = self._state()
            self._statements(self.tree.body, "<module>", None)
            if self._state() == before:
                break
        else:
            raise RuntimeError(f"{self.file}: the types did not settle")
        self.recording = True
        self._statements(self.tree.body, "<module>", None)

    def _state(self):
        return (
            {k: dict(v) for k, v in self.env.items()},
            {k: dict(v) for k, v in self.attrs.items()},
            dict(self.returns),
        )

    # names

    def _lookup(self, scope: str, name: str):
        while scope != "<module>":
            if name in self.env[scope]:
                return self.env[scope][name]
            scope = self.functions[scope].parent
        return self.env["<module>"].get(name)

    def _set(self, table: dict, name: str, value, line: int) -> None:
        old = table.get(name)
        new = join(old, value)
        lost = new is CONFLICT and old is not CONFLICT
        if lost and (_involves_library(old) or _involves_library(value)):
            self.usage.conflicts.append(f"{self.file}:{line}: {name}: {old} and {value}")
        table[name] = new

    def _record(self, lib: str, chain: tuple[str, ...], line: int, nargs=None) -> None:
        if self.recording:
            self.usage.uses.add(Use(lib, chain, self.file, line, nargs))

    def _annotation(self, node):
        """The type an annotation names, or None."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | None
            sides = [self._annotation(side) for side in (node.left, node.right)]
            known = [side for side in sides if side is not None]
            return known[0] if len(known) == 1 else None
        text = ast.unparse(node)
        if text in self.project.annotations:
            return self.project.annotations[text]
        if text in self.by_name and len(self.by_name[text]) == 1:
            qual = self.by_name[text][0]
            return Local(qual) if qual in self.classes else None
        return None

    # statements

    def _statements(self, body, scope: str, cls: str | None) -> None:
        for node in body:
            self._statement(node, scope, cls)

    def _statement(self, node, scope: str, cls: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(node, scope, cls)
        elif isinstance(node, ast.ClassDef):
            self._class(node, scope)
        elif isinstance(node, ast.Assign):
            value = self.type_of(node.value, scope)
            for target in node.targets:
                self._assign(target, value, scope, cls)
        elif isinstance(node, ast.AnnAssign):
            value = self._annotation(node.annotation)
            if node.value is not None:
                value = join(value, self.type_of(node.value, scope))
            self._assign(node.target, value, scope, cls)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self._assign(node.target, _item_of(self.type_of(node.iter, scope)), scope, None)
            self._statements(node.body, scope, cls)
            self._statements(node.orelse, scope, cls)
        elif isinstance(node, ast.Return):
            value = self.type_of(node.value, scope) if node.value is not None else None
            if scope in self.functions and scope not in self.fixed_returns:
                self._set(self.returns, scope, value, node.lineno)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self._import(node, scope)
        else:
            self._generic(node, scope, cls)

    def _generic(self, node, scope: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                self._statement(child, scope, cls)
            elif isinstance(child, ast.expr):
                self.type_of(child, scope)
            else:
                self._generic(child, scope, cls)

    def _function(self, node, scope: str, cls: str | None) -> None:
        qual = self.qualnames[node]
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.type_of(expr, scope)
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        static = any(ast.unparse(d) == "staticmethod" for d in node.decorator_list)
        for index, param in enumerate(params):
            value = self._annotation(param.annotation)
            if index == 0 and cls is not None and not static:
                value = Local(cls)
            self._set(self.env[qual], param.arg, value, node.lineno)
        fixed = self._annotation(node.returns)
        if fixed is not None:
            self.returns[qual] = fixed
            self.fixed_returns.add(qual)
        self._statements(node.body, qual, None)

    def _class(self, node: ast.ClassDef, scope: str) -> None:
        qual = self.qualnames[node]
        bases = [self.type_of(base, scope) for base in node.bases]
        self.lib_bases[qual] = [base for base in bases if isinstance(base, Lib)]
        for keyword in node.keywords:
            self.type_of(keyword.value, scope)
        if self.recording:
            methods = frozenset(self.methods[qual])
            for base in self.lib_bases[qual]:
                self.usage.subclasses.append(
                    Subclass(base.lib, base.chain, node.name, methods, self.file, node.lineno)
                )
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._function(statement, scope, qual)
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                value = self._annotation(statement.annotation)
                if statement.value is not None:
                    value = join(value, self.type_of(statement.value, scope))
                self._set(self.attrs[qual], statement.target.id, value, statement.lineno)
            elif isinstance(statement, ast.Assign):
                value = self.type_of(statement.value, scope)
                for target in statement.targets:
                    if isinstance(target, ast.Name):
                        self._set(self.attrs[qual], target.id, value, statement.lineno)
            else:
                self._statement(statement, scope, qual)

    def _import(self, node, scope: str) -> None:
        for alias in node.names:
            if isinstance(node, ast.Import):
                dotted = alias.name if alias.asname else alias.name.partition(".")[0]
                value = _lib(IMPORTS.get(dotted))
                name = alias.asname or dotted
            else:
                base = node.module or ""
                if node.level:
                    package = self.module.split(".")[: -node.level]
                    base = ".".join([*package, *([node.module] if node.module else [])])
                value = _lib(IMPORTS.get(f"{base}.{alias.name}"))
                exported = self.project.exports.get(base, {}).get(alias.name)
                value = value or exported
                name = alias.asname or alias.name
            self._set(self.env[scope], name, value, node.lineno)

    def _assign(self, target, value, scope: str, cls: str | None) -> None:
        if isinstance(target, ast.Name):
            self._set(self.env[scope], target.id, value, target.lineno)
        elif isinstance(target, (ast.Tuple, ast.List)):
            plain = not any(isinstance(e, ast.Starred) for e in target.elts)
            if isinstance(value, Items) and plain and len(value.items) == len(target.elts):
                items = value.items
            else:
                items = [value.item if isinstance(value, Seq) else None] * len(target.elts)
            for element, item in zip(target.elts, items):
                self._assign(element, item, scope, cls)
        elif isinstance(target, ast.Starred):
            self._assign(target.value, None, scope, cls)
        elif isinstance(target, ast.Attribute):
            owner = self.type_of(target.value, scope)
            if isinstance(owner, Local) and owner.qualname in self.attrs:
                self._set(self.attrs[owner.qualname], target.attr, value, target.lineno)
            else:
                self._attribute(owner, target.attr, target.lineno)
        else:  # a subscript
            self._generic(target, scope, cls)

    # expressions

    def type_of(self, node, scope: str):
        if isinstance(node, ast.Constant):
            return (
                Strings(frozenset({(node.value, node.lineno)}))
                if isinstance(node.value, str)
                else None
            )
        if isinstance(node, ast.Name):
            return self._lookup(scope, node.id)
        if isinstance(node, ast.Attribute):
            return self._attribute(self.type_of(node.value, scope), node.attr, node.lineno)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Tuple):
            return Items(tuple(self.type_of(e, scope) for e in node.elts))
        if isinstance(node, (ast.List, ast.Set)):
            item = None
            for element in node.elts:
                item = join(item, self.type_of(element, scope))
            return Seq(item)
        if isinstance(node, ast.IfExp):
            self.type_of(node.test, scope)
            return join(self.type_of(node.body, scope), self.type_of(node.orelse, scope))
        if isinstance(node, ast.NamedExpr):
            value = self.type_of(node.value, scope)
            self._assign(node.target, value, scope, None)
            return value
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for generator in node.generators:
                item = _item_of(self.type_of(generator.iter, scope))
                self._assign(generator.target, item, scope, None)
                for condition in generator.ifs:
                    self.type_of(condition, scope)
            for part in ("elt", "key", "value"):
                if hasattr(node, part):
                    self.type_of(getattr(node, part), scope)
            return None
        self._generic(node, scope, None)
        return None

    def _attribute(self, owner, name: str, line: int, nargs=None):
        """``owner.name``: record it when ``owner`` is a library object, and say what it is."""
        if isinstance(owner, Lib):
            self._record(owner.lib, (*owner.chain, name), line, nargs)
            return None if name.startswith("__") else Lib(owner.lib, (*owner.chain, name))
        if isinstance(owner, Instance):
            self._record(owner.lib, (*owner.chain, name), line, nargs)
            return Member(owner.lib, (*owner.chain, name))
        if isinstance(owner, Member):
            return self._attribute(self._property(owner), name, line, nargs)
        if isinstance(owner, Local):
            attrs = self.attrs.get(owner.qualname, {})
            if name in attrs:
                return attrs[name]
            if name in self.methods.get(owner.qualname, {}):
                return None
            for base in self.lib_bases.get(owner.qualname, []):
                self._record(base.lib, (*base.chain, name), line, nargs)
                return Member(base.lib, (*base.chain, name))
        return None

    def _call(self, node: ast.Call, scope: str):
        args = [self.type_of(arg, scope) for arg in node.args]
        keywords = {kw.arg: self.type_of(kw.value, scope) for kw in node.keywords}
        func, line = node.func, node.lineno
        nargs = None if any(isinstance(a, ast.Starred) for a in node.args) else len(node.args)
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and len(args) >= 2:
            return self._getattr(node, args[0], args[1])
        text = ast.unparse(func)
        if text in ("ctypes.CDLL", "CDLL", "ctypes.cdll.LoadLibrary") and args:
            return self._cdll(args[0])
        if isinstance(func, ast.Name):
            called = self._lookup(scope, func.id)
            if isinstance(called, Returns):
                return called.value
            quals = self.by_name.get(func.id, [])
            if called is None and len(quals) == 1:
                return self._call_local(quals[0], node, args, keywords, skip_self=False)
        elif isinstance(func, ast.Attribute):
            owner = self.type_of(func.value, scope)
            if isinstance(owner, Local):
                method = self.methods.get(owner.qualname, {}).get(func.attr)
                if method is not None:
                    return self._call_local(method, node, args, keywords, skip_self=True)
            called = self._attribute(owner, func.attr, line, nargs)
        else:
            called = self.type_of(func, scope)
        if isinstance(called, Lib):
            return self._call_library(called)
        if isinstance(called, Member):
            return self._method_returns(called)
        return None

    def _call_local(self, qual: str, node: ast.Call, args, keywords, skip_self: bool):
        """A call of a function or class of this file: arguments into its parameters."""
        if qual in self.classes:
            init = self.methods[qual].get("__init__")
            if init is not None:
                self._call_local(init, node, args, keywords, skip_self=True)
            else:  # a dataclass or NamedTuple: the arguments are its annotated fields, in order
                fields = [
                    s.target.id
                    for s in self.classes[qual].body
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
                ]
                for arg, value, name in zip(node.args, args, fields):
                    if isinstance(arg, ast.Starred):
                        break
                    self._set(self.attrs[qual], name, value, node.lineno)
                for name, value in keywords.items():
                    if name in fields:
                        self._set(self.attrs[qual], name, value, node.lineno)
            return Local(qual)
        definition = self.functions[qual].node.args
        params = [*definition.posonlyargs, *definition.args]
        params = params[1:] if skip_self else params
        for arg, value, param in zip(node.args, args, params):
            if isinstance(arg, ast.Starred):
                break
            self._set(self.env[qual], param.arg, value, node.lineno)
        names = {p.arg for p in [*params, *definition.kwonlyargs]}
        for name, value in keywords.items():
            if name in names:
                self._set(self.env[qual], name, value, node.lineno)
        return self.returns.get(qual)

    def _getattr(self, node: ast.Call, owner, name):
        if isinstance(name, Strings):
            results = {self._attribute(owner, text, line) for text, line in sorted(name.values)}
            return results.pop() if len(results) == 1 else None
        if isinstance(owner, (*_LIBRARY_TYPES, Local)) and self.recording:
            where = f"{self.file}:{node.lineno}"
            self.usage.dynamic.append((where, ast.unparse(node)))
        return None

    def _cdll(self, name):
        if isinstance(name, Strings):
            libs = {
                lib
                for text, _ in name.values
                for prefix, lib in CDLL_NAMES.items()
                if text.rsplit("/", 1)[-1].startswith(prefix)
            }
            if len(libs) == 1:
                return Lib(libs.pop())
        return None

    # what library calls and properties give

    def _call_library(self, called: Lib):
        module = self.project.libraries.get(called.lib)
        if module is None:  # not importable here: a capitalised name is taken for a class
            capital = called.chain and called.chain[-1][:1].isupper()
            return Instance(called.lib, called.chain) if capital else None
        obj = walk(module, called.chain)
        if obj is _MISSING:
            return None
        if isinstance(obj, type):
            return Instance(called.lib, called.chain)
        return self._documented(called.lib, module, obj)

    def _method_returns(self, member: Member):
        module = self.project.libraries.get(member.lib)
        if module is None:
            return self.project.returns.get((member.lib, member.chain))
        obj = walk(module, member.chain)
        return None if obj is _MISSING else self._documented(member.lib, module, obj)

    def _property(self, member: Member):
        module = self.project.libraries.get(member.lib)
        owner = walk(module, member.chain[:-1]) if module is not None else _MISSING
        if not isinstance(owner, type):
            return None
        static = inspect.getattr_static(owner, member.chain[-1], None)
        if isinstance(static, property) and static.fget is not None:
            return self._documented(member.lib, module, static.fget)
        return None

    @staticmethod
    def _documented(lib: str, module: ModuleType, obj):
        """The library class that ``obj``'s docstring signature(s) say it returns, or None."""
        found = set()
        for line in (getattr(obj, "__doc__", None) or "").splitlines():
            match = _SIGNATURE.match(line)
            if not match:
                continue
            text = match.group(1)
            name = CPP_TYPES.get(text, re.split(r"\.|::", text)[-1])
            plain = re.fullmatch(r"[\w.:]+", text) is not None
            found.add(name if plain and isinstance(getattr(module, name, None), type) else None)
        return Instance(lib, (found.pop(),)) if len(found) == 1 and None not in found else None


def _lib(name: str | None) -> Lib | None:
    return Lib(name) if name else None


def _item_of(value):
    if isinstance(value, Seq):
        return value.item
    if isinstance(value, Items):
        item = None
        for element in value.items:
            item = join(item, element)
        return item
    return None


# -------------------------------------------------------------------------------------- entry


@dataclass
class _Project:
    annotations: dict[str, object]
    libraries: dict[str, ModuleType]
    returns: dict[tuple[str, tuple[str, ...]], object]
    usage: Usage = field(default_factory=Usage)
    exports: dict[str, dict[str, Returns]] = field(default_factory=dict)


def collect(
    sources: Iterable[tuple[str, str, str]],
    *,
    annotations: dict[str, str] | None = None,
    libraries: dict[str, ModuleType] | None = None,
    returns: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] | None = None,
) -> Usage:
    """The library uses in ``sources``: ``(file label, dotted module name, source text)``, read
    in order (a file may use what an earlier one's functions return).

    ``annotations``: annotation text -> library (``{"ModuleType": "tensorrt"}``).
    ``libraries``: library -> the imported module whose docstrings give return types.
    ``returns``: (library, method chain) -> class chain, for a library not importable here.
    """
    project = _Project(
        annotations={text: Lib(lib) for text, lib in (annotations or {}).items()},
        libraries=dict(libraries or {}),
        returns={
            (lib, chain): Instance(lib, result) for (lib, chain), result in (returns or {}).items()
        },
    )
    for file, module, source in sources:
        reader = _Reader(source, file, module, project)
        reader.run()
        project.exports[module] = {
            qual: Returns(value)
            for qual, value in reader.returns.items()
            if "." not in qual and isinstance(value, _LIBRARY_TYPES)
        }
    return project.usage


if __name__ == "__main__":  # print what the GPU API test collects
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import test_gpu_api

    for lib, uses in test_gpu_api.all_uses().items():
        print(f"{lib}: {len({use.name for use in uses})} names")
        for use in uses:
            print(f"  {use}")
