# polyvisor-hyperv script: snapshot v1
$vm = Get-PvVm $pv.id
switch ($pv.op) {
  'list' { }
  'create' {
    Get-VMSnapshot -VM $vm -Name $pv.name -ErrorAction SilentlyContinue | Remove-VMSnapshot -Confirm:$false
    Checkpoint-VM -VM $vm -SnapshotName $pv.name
  }
  'restore' {
    $s = Get-VMSnapshot -VM $vm -Name $pv.name -ErrorAction SilentlyContinue
    if (-not $s) { Stop-Pv "the VM has no checkpoint named $($pv.name)" 'ObjectNotFound' 'PolyvisorSnapshotNotFound' }
    Restore-VMSnapshot -VMSnapshot @($s)[0] -Confirm:$false
  }
  'remove' { Get-VMSnapshot -VM $vm -Name $pv.name -ErrorAction SilentlyContinue | Remove-VMSnapshot -Confirm:$false }
  default { Stop-Pv "unknown checkpoint operation" 'InvalidArgument' 'PolyvisorBadAction' }
}
Out-PvJson @(Get-VMSnapshot -VM $vm | ForEach-Object {
  [ordered]@{ Name = $_.Name; Id = "$($_.Id)"; ParentSnapshotName = $_.ParentSnapshotName; CreationTime = $_.CreationTime.ToString('s'); SnapshotType = "$($_.SnapshotType)" } })
