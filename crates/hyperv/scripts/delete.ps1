# polyvisor-hyperv script: delete v1
$root = [IO.Path]::GetFullPath($pv.vhd_path).TrimEnd('\') + '\'
foreach ($f in @($pv.files)) {
  if (-not [IO.Path]::GetFullPath($f).StartsWith($root, [StringComparison]::OrdinalIgnoreCase)) { Stop-Pv "refusing to remove $f outside vhd_path" 'PermissionDenied' 'PolyvisorOutsideVhdPath' }
}
$vm = Get-VM -Id $pv.id -ErrorAction SilentlyContinue
if ($vm) {
  if ("$($vm.State)" -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
  Get-VMSnapshot -VM $vm | Remove-VMSnapshot -Confirm:$false
  Remove-VM -VM $vm -Force
}
$removed = @()
foreach ($f in @($pv.files)) {
  $full = [IO.Path]::GetFullPath($f)
  if (Test-Path -LiteralPath $full) { Remove-Item -LiteralPath $full -Force; $removed += $full }
}
Out-PvJson ([ordered]@{ Removed = $removed })
