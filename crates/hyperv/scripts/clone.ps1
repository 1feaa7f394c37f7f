# polyvisor-hyperv script: clone v1
$src = Get-PvVm $pv.source
if (Get-VM -Name $pv.name -ErrorAction SilentlyContinue) { Stop-Pv "a virtual machine named $($pv.name) already exists" 'ResourceExists' 'PolyvisorVmExists' }
if ($pv.snapshot) {
  $snap = Get-VMSnapshot -VM $src -Name $pv.snapshot -ErrorAction SilentlyContinue
  if (-not $snap) { Stop-Pv "the VM has no checkpoint named $($pv.snapshot)" 'ObjectNotFound' 'PolyvisorSnapshotNotFound' }
  $disk = @(@($snap)[0].HardDrives)[0]
} else { $disk = @(Get-VMHardDiskDrive -VM $src)[0] }
if (-not $disk) { Stop-Pv "the source virtual machine has no disk" 'InvalidData' 'PolyvisorNoDisk' }
$target = Join-Path $pv.vhd_path ($pv.name + '.vhdx')
if (Test-Path -LiteralPath $target) { Stop-Pv "the disk $target already exists" 'ResourceExists' 'PolyvisorDiskExists' }
# Linked: a differencing disk on the source's (or the checkpoint's) disk. Full: Convert-VHD
# writes a standalone disk, merging a checkpoint chain (a plain copy of an .avhdx would not).
if ($pv.linked) { New-VHD -Path $target -ParentPath $disk.Path -Differencing | Out-Null }
else { Convert-VHD -Path $disk.Path -DestinationPath $target -VHDType Dynamic }
$vm = $null
try {
  $p = @{ Name = $pv.name; Generation = $src.Generation; MemoryStartupBytes = ([int64]$pv.memory_mb * 1MB); VHDPath = $target; Path = $pv.vm_path }
  if ($pv.switch) { $p.SwitchName = $pv.switch }
  $vm = New-VM @p
  Set-VMProcessor -VM $vm -Count $pv.cpus
  Set-VM -VM $vm -Notes $pv.notes
  if (@($pv.nics).Count -gt 0) {
    Get-VMNetworkAdapter -VM $vm | Remove-VMNetworkAdapter
    $n = 0
    foreach ($nic in @($pv.nics)) {
      $a = Add-VMNetworkAdapter -VM $vm -SwitchName $pv.switch -Name "NIC$n" -Passthru
      if ($nic.mac) { Set-VMNetworkAdapter -VMNetworkAdapter $a -StaticMacAddress $nic.mac }
      if ($nic.vlan) { Set-VMNetworkAdapterVlan -VMNetworkAdapter $a -Access -VlanId $nic.vlan }
      $n++
    }
  }
  if ($pv.start) { Start-VM -VM $vm }
} catch {
  if ($vm) { Remove-VM -VM $vm -Force -ErrorAction SilentlyContinue }
  Remove-Item -LiteralPath $target -Force -ErrorAction SilentlyContinue
  throw
}
Out-PvJson (ConvertTo-PvVm (Get-PvVm "$($vm.Id)"))
