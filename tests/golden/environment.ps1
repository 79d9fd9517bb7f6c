# A self-extracting pixi-pack environment for Windows PowerShell 5.1+ and PowerShell 7.
# Run it to unpack the environment (pixi-unpack's options apply: -o DIR, -e NAME, -s SHELL, --help).
# It needs Python >= 3.9: the py launcher, python3 or python on PATH, or the one $env:PIXI_PACK_PYTHON names.
# After the script, a comment holds the base64 of the pack (a tar) followed by pixi-pack's zipapp.
$ErrorActionPreference = 'Stop'
$PayloadOffset = 3549
$PayloadBase64Length = 460
$PayloadLength = 220
$PayloadSha256 = 'e89e99a8abe0720cf3283e0e39c3542654709dc57b6b92596d7a6589eb205802'

function Find-Python {
    $ErrorActionPreference = 'SilentlyContinue'
    if ($env:PIXI_PACK_PYTHON) {
        $tries = @(@{ Exe = $env:PIXI_PACK_PYTHON; Args = @() })
    } else {
        $tries = @(@{ Exe = 'py'; Args = @('-3') }, @{ Exe = 'python3'; Args = @() }, @{ Exe = 'python'; Args = @() })
    }
    foreach ($try in $tries) {
        if (-not (Get-Command $try.Exe -ErrorAction SilentlyContinue)) { continue }
        $tryArgs = $try.Args
        & $try.Exe @tryArgs -I -S -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>$null | Out-Null
        if ($LASTEXITCODE -eq 0) { return $try }
    }
    return $null
}

$python = Find-Python
if (-not $python) {
    [Console]::Error.WriteLine('error: unpacking this environment needs Python >= 3.9, and there is no py, python3 or python of that version on PATH: install one, or set PIXI_PACK_PYTHON to its path')
    exit 1
}
$tmp = Join-Path ([IO.Path]::GetTempPath()) ('pixi-unpack-' + [Guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $tmp | Out-Null
$savedShivRoot = $env:SHIV_ROOT
$status = 1
try {
    # The tar followed by the zipapp: the pack at offset 0 and a runnable .pyz at once.
    $pyz = Join-Path $tmp 'environment.pyz'
    $in = [IO.File]::OpenRead($PSCommandPath)
    try {
        $out = [IO.File]::Create($pyz)
        $mode = [Security.Cryptography.FromBase64TransformMode]::IgnoreWhiteSpaces
        $transform = New-Object Security.Cryptography.FromBase64Transform -ArgumentList $mode
        $decoder = New-Object Security.Cryptography.CryptoStream -ArgumentList $out, $transform, ([Security.Cryptography.CryptoStreamMode]::Write)
        try {
            [void]$in.Seek($PayloadOffset, [IO.SeekOrigin]::Begin)
            $buffer = New-Object byte[] 1048576
            $left = [long]$PayloadBase64Length
            while ($left -gt 0) {
                $read = $in.Read($buffer, 0, [int][Math]::Min([long]$buffer.Length, $left))
                if ($read -le 0) { throw 'this file is truncated: download it again' }
                $decoder.Write($buffer, 0, $read)
                $left -= $read
            }
            $decoder.FlushFinalBlock()
        } finally {
            $decoder.Dispose()
        }
    } finally {
        $in.Dispose()
    }
    # The zipapp unpacks its dependencies into SHIV_ROOT: a temporary one, removed on the way out.
    $env:SHIV_ROOT = Join-Path $tmp 'shiv'
    # Windows PowerShell turns redirected stderr lines into errors: progress there must not stop us.
    $ErrorActionPreference = 'Continue'
    $pythonArgs = $python.Args
    & $python.Exe @pythonArgs -I $pyz unpack --payload-offset 0 --payload-length $PayloadLength --payload-sha256 $PayloadSha256 $pyz @args
    $status = $LASTEXITCODE
} finally {
    $env:SHIV_ROOT = $savedShivRoot
    Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
}
exit $status
<#
YSB0aW55IHRhciBhIHRpbnkgdGFyIGEgdGlueSB0YXIgYSB0aW55IHRhciBhIHRpbnkgdGFyIGEg
dGlueSB0YXIgYSB0aW55IHRhciBhIHRpbnkgdGFyIGEgdGlueSB0YXIgYSB0aW55IHRhciBhIHRp
bnkgdGFyIGEgdGlueSB0YXIgYSB0aW55IHRhciBhIHRpbnkgdGFyIGEgdGlueSB0YXIgYSB0aW55
IHRhciBhIHRpbnkgdGFyIGEgdGlueSB0YXIgYSB0aW55IHRhciBhIHRpbnkgdGFyIFBLIG5vdCBy
ZWFsbHkgYSB6aXBhcHAgUEsgbm90IHJlYWxseSBhIHppcGFwcCBQSyBub3QgcmVhbGx5IGEgemlw
YXBwIFBLIG5vdCByZWFsbHkgYSB6aXBhcHAgUEsgbm90IHJlYWxseSBhIHppcGFwcCA=
#>
